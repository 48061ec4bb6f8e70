//! `Database`: the primary's deadpool pool of [`DbConnection`](crate::DbConnection)s, and the
//! read replicas beside it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel::sql_types::{Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use infra_core::{Env, Error, HealthCheck, Probe, Result};

use crate::config::DbConfig;
use crate::connection::DbConnection;
use crate::connection_manager::{Pool, PooledConnection, build_pool, checkout};
use crate::error::{map_connection_error, map_diesel_error, map_pool_error};
use crate::pool_metrics::PoolMetrics;
use crate::replicas::Replicas;
use crate::session::{Session, establish};

/// A pooled PostgreSQL database, cheap to clone and share (the TypeScript module's Prisma
/// singleton, without a hidden global: build it once, clone it into handlers).
///
/// [`get`](Database::get) checks out a connection to the primary, for reads and writes;
/// [`read`](Database::read) one to the next healthy read replica when `DATABASE_REPLICA_URLS`
/// names any, else to the primary; [`transaction`](Database::transaction) runs a body in a
/// transaction on the primary and retries serialization failures and deadlocks. Whether the
/// database answers is its [`HealthCheck`] (`db.check().await`).
///
/// Building never connects; connections open on first use. A checkout drops connections whose
/// socket is closed (the server killed them, an I/O error) and verifies with `SELECT 1` those
/// unused for `verify_after_idle` (500 ms), so connections the server killed are replaced
/// transparently while a busy pool pays no extra round trip (see `docs/db.md`). The pool hands
/// out the most recently used connection first, so the idle ones age and get verified or closed.
///
/// ```no_run
/// # async fn demo() -> infra_core::Result<()> {
/// use diesel_async::RunQueryDsl;
/// let db = infra_db::Database::from_env(&infra_core::Env::process())?;
/// let mut conn = db.get().await?;
/// diesel::sql_query("SELECT 1").execute(&mut conn).await.map_err(infra_db::map_diesel_error)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    replicas: Replicas,
    config: DbConfig,
    reaper: std::sync::OnceLock<()>,
    metrics: PoolMetrics,
}

impl Database {
    /// Builds the pool from `DATABASE_URL` and the `DATABASE_*` settings; a missing or
    /// malformed variable is a `Config` error naming it (never printing the password).
    ///
    /// ```
    /// use infra_core::Env;
    /// let db = infra_db::Database::from_env(&Env::from_pairs([(
    ///     "DATABASE_URL",
    ///     "postgres://app:secret@127.0.0.1:5432/app",
    /// )]))
    /// .unwrap(); // builds the pool; connects on first use
    /// let err = infra_db::Database::from_env(&Env::empty()).err().unwrap();
    /// assert_eq!(err.variable(), Some("DATABASE_URL"));
    /// # drop(db);
    /// ```
    pub fn from_env(env: &Env) -> Result<Self> {
        Database::from_config(DbConfig::from_env(env)?)
    }

    /// Builds the pool for `config`, without connecting.
    ///
    /// ```
    /// use std::time::Duration;
    /// use infra_db::{Database, DbConfig};
    ///
    /// let mut config = DbConfig::new("postgres://app@127.0.0.1:5432/app").unwrap();
    /// config.pool_size = 4;
    /// config.acquire_timeout = Duration::from_secs(2);
    /// let db = Database::from_config(config).unwrap();
    /// assert_eq!(db.config().pool_size, 4);
    /// ```
    pub fn from_config(config: DbConfig) -> Result<Self> {
        let pool = build_pool(config.url.expose(), &config)?;
        let replicas = Replicas::new(&config)?;
        Ok(Database {
            inner: Arc::new(Inner {
                pool,
                replicas,
                config,
                reaper: std::sync::OnceLock::new(),
                metrics: PoolMetrics::new(),
            }),
        })
    }

    /// A connection to the primary, for reads and writes, within the acquire timeout; back to
    /// the pool when dropped. Run diesel's DSL on it (`diesel_async::RunQueryDsl`).
    ///
    /// ```no_run
    /// # async fn demo(db: infra_db::Database) -> infra_core::Result<()> {
    /// use diesel_async::RunQueryDsl;
    /// use infra_db::map_diesel_error;
    ///
    /// let mut conn = db.get().await?;
    /// diesel::sql_query("UPDATE users SET last_seen = now() WHERE id = 42")
    ///     .execute(&mut conn)
    ///     .await
    ///     .map_err(map_diesel_error)?;
    /// # Ok(()) }
    /// ```
    pub async fn get(&self) -> Result<PooledConnection> {
        self.start_idle_reaper();
        let started = std::time::Instant::now();
        match checkout(&self.inner.pool).await {
            Ok(conn) => {
                self.inner.metrics.acquired(started.elapsed());
                Ok(conn)
            }
            Err(err) => {
                if matches!(err, deadpool::managed::PoolError::Timeout(_)) {
                    self.inner.metrics.timed_out();
                }
                Err(map_pool_error(err))
            }
        }
    }

    /// Refreshes the pool gauges (`db_client_connections{state}`, `db_client_connection_max`,
    /// `_pending_requests`, `db_client_replicas{state}`) from the pool's state: what the
    /// metrics interval calls. Cheap (no query).
    pub fn record_metrics(&self) {
        let (healthy, down) = self.inner.replicas.health();
        self.inner.metrics.sample(&self.inner.pool, healthy, down);
    }

    /// A connection for reads: the next healthy replica (round robin), else the primary.
    ///
    /// ```no_run
    /// # async fn demo(db: infra_db::Database) -> infra_core::Result<()> {
    /// use diesel::sql_types::BigInt;
    /// use diesel_async::RunQueryDsl;
    ///
    /// #[derive(diesel::QueryableByName)]
    /// struct Count { #[diesel(sql_type = BigInt)] n: i64 }
    ///
    /// let mut conn = db.read().await?; // a replica when DATABASE_REPLICA_URLS names one
    /// let rows: Vec<Count> = diesel::sql_query("SELECT count(*) AS n FROM users")
    ///     .load(&mut conn)
    ///     .await
    ///     .map_err(infra_db::map_diesel_error)?;
    /// # let _ = rows; Ok(()) }
    /// ```
    pub async fn read(&self) -> Result<PooledConnection> {
        self.start_idle_reaper();
        match self.inner.replicas.checkout().await {
            Some(conn) => Ok(conn),
            None => self.get().await,
        }
    }

    /// How many read replicas are configured.
    pub fn replica_count(&self) -> usize {
        self.inner.replicas.len()
    }

    /// A connection of its own to the primary, outside the pool, with the pool's TLS, connect
    /// timeout and statement timeout: for a task that holds a connection for long (a worker's
    /// claim loop), which would otherwise pin one of the pool's slots.
    pub async fn dedicated_connection(&self) -> Result<DbConnection> {
        self.open_outside_pool().await
    }

    /// A connection of its own for `LISTEN`: diesel-async's `AsyncPgConnection`, whose
    /// `notifications_stream()` yields what `NOTIFY` sends. Same TLS and timeouts as the pool.
    pub async fn listener_connection(&self) -> Result<AsyncPgConnection> {
        self.open_outside_pool().await
    }

    async fn open_outside_pool<C: Session>(&self) -> Result<C> {
        let config = &self.inner.config;
        establish::<C>(
            config.url.expose().clone(),
            config.connect_timeout,
            config.statement_timeout,
        )
        .await
        .map_err(map_connection_error)
    }

    /// Closes connections idle longer than `idle_timeout`. Started on first use, because
    /// building a `Database` needs no runtime; it stops when the last clone is dropped.
    fn start_idle_reaper(&self) {
        if self.inner.reaper.set(()).is_err() {
            return;
        }
        let idle = self.inner.config.idle_timeout;
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval((idle / 2).max(Duration::from_millis(50)));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.pool.retain(|_, metrics| metrics.last_used() < idle);
                inner.replicas.retain_idle(idle);
            }
        });
    }

    /// The primary's pool.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The configuration.
    pub fn config(&self) -> &DbConfig {
        &self.inner.config
    }

    /// The health check as a trait object (the database is one itself).
    pub fn health(&self) -> Arc<dyn HealthCheck> {
        Arc::new(self.clone())
    }

    /// `SELECT 1` through the pool.
    async fn select_one(&self) -> Result<()> {
        let mut conn = self.get().await?;
        let one: i32 = diesel::select(diesel::dsl::sql::<Integer>("1"))
            .get_result(&mut conn)
            .await
            .map_err(map_diesel_error)?;
        if one == 1 {
            Ok(())
        } else {
            Err(Error::backend("SELECT 1 returned something else"))
        }
    }
}

#[async_trait]
impl HealthCheck for Database {
    fn service(&self) -> &str {
        "database"
    }

    fn backend(&self) -> &str {
        "postgres"
    }

    async fn probe(&self) -> Result<Probe> {
        self.select_one().await?;
        let mut conn = self.get().await?;
        let version: String = diesel::select(diesel::dsl::sql::<Text>(
            "current_setting('server_version')",
        ))
        .get_result(&mut conn)
        .await
        .map_err(map_diesel_error)?;
        drop(conn);
        let status = self.inner.pool.status();
        Ok(Probe::healthy(format!(
            "PostgreSQL {version}; pool size {} of {}, idle {}, in use {}, waiting {}",
            status.size,
            status.max_size,
            status.available,
            status.size - status.available,
            status.waiting
        )))
    }
}
