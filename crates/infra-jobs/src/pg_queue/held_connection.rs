//! A connection of its own (outside the pool) kept by one of the queue's hot loops.
//!
//! The claim loop, and the settlements with the heartbeats, each hold one: the hot path
//! never waits for the pool or its checkout checks. A connection is dropped after any error
//! (it may be broken or mid-transaction) and re-opened on next use.

use infra_core::Result;
use infra_db::{Database, DbConnection};

#[derive(Default)]
pub(crate) struct HeldConnection {
    slot: tokio::sync::Mutex<Option<DbConnection>>,
}

/// The held connection, locked for one operation.
pub(crate) struct HeldGuard<'a>(tokio::sync::MutexGuard<'a, Option<DbConnection>>);

impl HeldConnection {
    /// Locks the connection, opening it on `db` first when there is none.
    pub(crate) async fn lock(&self, db: &Database) -> Result<HeldGuard<'_>> {
        let mut slot = self.slot.lock().await;
        if slot.is_none() {
            *slot = Some(db.dedicated_connection().await?);
        }
        Ok(HeldGuard(slot))
    }
}

impl HeldGuard<'_> {
    pub(crate) fn conn(&mut self) -> &mut DbConnection {
        self.0.as_mut().expect("opened by lock")
    }

    /// Keeps the connection unless `result` failed (it may be broken or mid-transaction).
    pub(crate) fn keep_if_ok<T>(mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            *self.0 = None;
        }
        result
    }
}
