//! The queue's wake-up channel: `NOTIFY infra_jobs` when work may be due, and the listener
//! that wakes this process's idle workers.
//!
//! Notifications are an optimisation, never the only signal: workers also poll, so a
//! notification lost while the listening connection re-opens delays work by at most the poll
//! interval.

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_query;
use diesel_async::RunQueryDsl;
use futures::StreamExt;
use infra_core::{Error, Result};
use infra_db::{Database, map_diesel_error};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The channel enqueues notify and idle workers listen on.
pub(crate) const CHANNEL: &str = "infra_jobs";

/// A statement that notifies the channel (delivered when its transaction commits).
pub(crate) fn notify_statement() -> String {
    format!("SELECT pg_notify('{CHANNEL}', '')")
}

/// Keeps a connection listening, re-opening it a second after it is lost.
pub(crate) fn spawn_listener(db: Database, wake: Arc<Notify>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(err) = listen(&db, &wake).await {
                tracing::warn!(error = %err, "LISTEN connection lost; workers poll until it is back");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Holds a dedicated connection (outside the pool) on `LISTEN infra_jobs` and wakes idle
/// workers on every notification.
async fn listen(db: &Database, wake: &Notify) -> Result<()> {
    let mut conn = db.listener_connection().await?;
    sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .await
        .map_err(map_diesel_error)?;
    // Jobs may have arrived while no one listened.
    wake.notify_waiters();
    let mut stream = std::pin::pin!(conn.notifications_stream());
    while let Some(n) = stream.next().await {
        n.map_err(map_diesel_error)?;
        wake.notify_waiters();
        wake.notify_one();
    }
    Err(Error::unavailable("the LISTEN connection closed"))
}
