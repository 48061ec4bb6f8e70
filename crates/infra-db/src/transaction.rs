//! Transactions that retry serialization failures and deadlocks.

use std::time::Duration;

use diesel::result::Error as DieselError;
use diesel_async::{AnsiTransactionManager, TransactionManager};
use futures::future::BoxFuture;
use infra_core::{Backoff, Error, Result, RetryPolicy};

use crate::connection::DbConnection;
use crate::database::Database;
use crate::error::{is_retryable_transaction_error, map_diesel_error};

/// The isolation level of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// PostgreSQL's default.
    #[default]
    ReadCommitted,
    /// Snapshot isolation.
    RepeatableRead,
    /// Full serializability; conflicting transactions fail with SQLSTATE 40001 and are retried.
    Serializable,
}

/// How a transaction is retried unless the caller says otherwise: 5 attempts in all, the
/// waits 10 ms doubling up to 500 ms with equal jitter, so retrying transactions don't collide
/// again in lockstep.
pub const DEFAULT_TRANSACTION_RETRY: RetryPolicy = RetryPolicy::new(
    5,
    Backoff::new(Duration::from_millis(10), Duration::from_millis(500)),
);

impl Database {
    /// Runs `body` in a transaction on the primary and commits it. `body` runs inside the
    /// transaction and must not open one of its own. A serialization failure or
    /// deadlock ([`is_retryable_sqlstate`](crate::is_retryable_sqlstate)) rolls back and
    /// re-runs `body` (up to `policy.max_attempts`, with its jittered back-off; usually
    /// [`DEFAULT_TRANSACTION_RETRY`]); any other error
    /// rolls back and returns at once. The error returned keeps the last attempt's kind and
    /// `sqlstate` context and adds `attempts`.
    ///
    /// ```no_run
    /// # async fn demo(db: infra_db::Database) -> infra_core::Result<()> {
    /// use diesel_async::RunQueryDsl;
    /// use infra_db::{DEFAULT_TRANSACTION_RETRY, Isolation};
    ///
    /// let moved = db
    ///     .transaction(Isolation::Serializable, DEFAULT_TRANSACTION_RETRY, |conn| {
    ///         Box::pin(async move {
    ///             diesel::sql_query("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
    ///                 .execute(conn)
    ///                 .await
    ///         })
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<T, F>(
        &self,
        isolation: Isolation,
        policy: RetryPolicy,
        body: F,
    ) -> Result<T>
    where
        T: Send,
        F: for<'r> Fn(&'r mut DbConnection) -> BoxFuture<'r, std::result::Result<T, DieselError>>
            + Send
            + Sync,
    {
        let attempts = policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let mut conn = self.get().await?;
            let outcome = run_once(&mut conn, isolation, &body).await;
            match outcome {
                Ok(value) => return Ok(value),
                Err(err) if is_retryable_transaction_error(&err) && attempt < attempts => {
                    tracing::debug!(attempt, error = %err, "retrying transaction");
                    drop(conn);
                    tokio::time::sleep(policy.delay(attempt)).await;
                    attempt += 1;
                }
                Err(err) => return Err(final_error(map_diesel_error(err), attempt)),
            }
        }
    }
}

/// The error a transaction returns: the mapped error of its last attempt (kind, SQLSTATE and
/// every other context, retryable flag), with the number of attempts made as `attempts`
/// context — and in the message when the body ran more than once.
fn final_error(last: Error, attempts: u32) -> Error {
    let message = if attempts > 1 {
        format!("{} (after {attempts} attempts)", last.message())
    } else {
        last.message().to_owned()
    };
    let mut err = Error::new(last.kind(), message).with_retryable(last.is_retryable());
    for (key, value) in last.context_pairs() {
        err = err.with_context(key, value);
    }
    err.with_context("attempts", attempts.to_string())
        .with_source(last)
}

/// One attempt: BEGIN with the isolation level, the body, COMMIT — or ROLLBACK on any error.
async fn run_once<T, F>(
    conn: &mut DbConnection,
    isolation: Isolation,
    body: &F,
) -> std::result::Result<T, DieselError>
where
    F: for<'r> Fn(&'r mut DbConnection) -> BoxFuture<'r, std::result::Result<T, DieselError>>,
{
    let begin = match isolation {
        Isolation::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED",
        Isolation::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        Isolation::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
    };
    // Through the transaction manager, not bare BEGIN/COMMIT: it knows a transaction is open,
    // so a connection whose attempt was dropped mid-way (a timeout, a client that went away)
    // counts as broken and the pool never hands it out still inside the transaction.
    AnsiTransactionManager::begin_transaction_sql(conn, begin).await?;
    match body(conn).await {
        // A serializable transaction may also fail at COMMIT; the manager then rolls back.
        Ok(value) => <Manager as TransactionManager<DbConnection>>::commit_transaction(conn)
            .await
            .map(|()| value),
        Err(err) => {
            // A failed ROLLBACK leaves the manager in error: the pool then drops the
            // connection. The body's error is the one to report.
            let _ = <Manager as TransactionManager<DbConnection>>::rollback_transaction(conn).await;
            Err(err)
        }
    }
}

/// The transaction manager of the pool's connections, as the trait diesel-async defines.
type Manager = AnsiTransactionManager;
