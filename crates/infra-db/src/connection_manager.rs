//! The pool's connection manager — when a pooled connection may be handed out without a
//! round trip — and the deadpool pool built on it (primary and replicas alike).
//!
//! diesel-async's `Verified` recycling runs `SELECT 1` on every checkout, which halves the rate
//! of short queries (two round trips instead of one). A connection that was checked out a
//! moment ago and came back healthy is almost certainly still alive, so, as HikariCP does with
//! its alive-bypass window, only connections unused for longer than `verify_after_idle` pay
//! for the round trip. Every checkout still makes the local checks, which cost nothing:
//!
//! - the client has noticed the socket closed: tokio-postgres stops a connection on any I/O
//!   error, on end of stream, and on the server's `FATAL` (what `pg_terminate_backend`, a
//!   restart or a failover sends), which marks it closed — or a query on it already failed
//!   because the session ended ([`DbConnection::is_closed`]);
//! - the connection was returned inside a transaction diesel could not roll back.
//!
//! Either makes the connection broken: it is dropped, never handed out, and the pool opens a
//! new one. What the window gives up: a connection the server killed within the window, before
//! the client has read the server's goodbye, can be handed out; its first query then fails
//! with `Unavailable` (retryable) and the connection is dropped when it is returned. Setting
//! the window to zero verifies every checkout again.

use std::time::Duration;

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use diesel::sql_types::Integer;
use diesel_async::RunQueryDsl;
use diesel_async::pooled_connection::PoolError;
use infra_core::{Error, Result};

use crate::config::DbConfig;
use crate::connection::DbConnection;
use crate::session::establish;

/// The pool of a [`Database`](crate::Database) (primary or replica).
pub type Pool = deadpool::managed::Pool<ConnectionManager>;

/// A connection borrowed from the pool; returned when dropped.
pub type PooledConnection = deadpool::managed::Object<ConnectionManager>;

/// A pool over `url` with `config`'s sizes and timeouts.
pub(crate) fn build_pool(url: &str, config: &DbConfig) -> Result<Pool> {
    let manager = ConnectionManager::new(url, config);
    Pool::builder(manager)
        .max_size(config.pool_size)
        // Most recently used first: under light load the spare connections sit idle, so they
        // are verified (or closed by the idle timeout) instead of each staying just fresh
        // enough to skip the check.
        .queue_mode(deadpool::managed::QueueMode::Lifo)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(config.acquire_timeout))
        .create_timeout(Some(config.connect_timeout + Duration::from_secs(1)))
        // The manager bounds its own `SELECT 1` (the only I/O of a recycle).
        .recycle_timeout(None)
        .build()
        .map_err(|e| Error::backend(format!("cannot build the PostgreSQL pool: {e}")))
}

/// Opens [`DbConnection`]s and verifies only those idle past the window.
pub struct ConnectionManager {
    url: String,
    connect_timeout: Duration,
    statement_timeout: Duration,
    verify_after_idle: Duration,
    /// Bounds the `SELECT 1` of a verification. The manager applies it itself, only around
    /// that round trip, so the pool needs no recycle timeout (a timer per checkout).
    verify_timeout: Duration,
}

impl ConnectionManager {
    /// Connections to `url` with `config`'s timeouts; those unused for `verify_after_idle` or
    /// longer are checked with `SELECT 1` before they are handed out.
    pub(crate) fn new(url: &str, config: &DbConfig) -> Self {
        ConnectionManager {
            url: url.to_owned(),
            connect_timeout: config.connect_timeout,
            statement_timeout: config.statement_timeout,
            verify_after_idle: config.verify_after_idle,
            verify_timeout: config.acquire_timeout,
        }
    }
}

/// Checks a connection out of `pool` within its wait timeout.
///
/// First without waiting: when a connection (or room for a new one) is free, as it is
/// whenever the pool is not exhausted, the checkout then arms no timer at all. Only when the
/// pool is exhausted does it wait, bounded by the pool's wait timeout.
pub(crate) async fn checkout(pool: &Pool) -> std::result::Result<PooledConnection, DeadpoolError> {
    let now = deadpool::managed::Timeouts {
        wait: Some(Duration::ZERO),
        ..pool.timeouts()
    };
    match pool.timeout_get(&now).await {
        Err(deadpool::managed::PoolError::Timeout(deadpool::managed::TimeoutType::Wait)) => {
            pool.get().await
        }
        other => other,
    }
}

/// The pool's error type.
pub(crate) type DeadpoolError = deadpool::managed::PoolError<PoolError>;

impl std::fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("verify_after_idle", &self.verify_after_idle)
            .finish_non_exhaustive()
    }
}

impl Manager for ConnectionManager {
    /// Boxed: deadpool moves its objects on every checkout and return, and a pointer moves
    /// for less than the connection.
    type Type = Box<DbConnection>;
    type Error = PoolError;

    async fn create(&self) -> std::result::Result<Box<DbConnection>, PoolError> {
        establish(
            self.url.clone(),
            self.connect_timeout,
            self.statement_timeout,
        )
        .await
        .map(Box::new)
        .map_err(PoolError::ConnectionError)
    }

    async fn recycle(
        &self,
        conn: &mut Box<DbConnection>,
        metrics: &Metrics,
    ) -> RecycleResult<PoolError> {
        // `is_broken`: the socket is closed (I/O error, end of stream, the server's FATAL) or
        // a transaction was left open.
        if conn.is_broken() {
            return Err(RecycleError::Message("broken connection".into()));
        }
        // `last_used` counts from the last checkout, so a connection held for long is verified
        // on its next checkout too: the window only ever errs towards checking.
        if metrics.last_used() < self.verify_after_idle {
            return Ok(());
        }
        let verify = diesel::select(diesel::dsl::sql::<Integer>("1")).execute(&mut **conn);
        match tokio::time::timeout(self.verify_timeout, verify).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(RecycleError::Backend(PoolError::QueryError(e))),
            Err(_) => Err(RecycleError::Message("the SELECT 1 check timed out".into())),
        }
    }
}
