//! `PgQueue`: the durable job queue on PostgreSQL (feature `postgres`).
//!
//! - Its tables come from its own migrations (`crates/infra-jobs/migrations`), run by
//!   infra-db's migration runner ([`migrations`]) on [`JobQueue::prepare`] or the first send;
//!   several workers may start at once.
//! - Workers claim batches with `FOR UPDATE SKIP LOCKED` and hold a lease (`locked_until`)
//!   that heartbeats extend; a sweep hands expired leases back, so a crashed worker's jobs run
//!   again ([`claim`]).
//! - Enqueues `pg_notify` in the same transaction: idle workers, `LISTEN`ing on a dedicated
//!   connection, wake when it commits; they also poll in case a notification is lost
//!   ([`enqueue`], [`wake_channel`]).
//! - Settlements arrive in batches: one statement per kind of settlement ([`settle`]).
//! - Concurrency limits hold across every process sharing the queue: jobs with limits are
//!   claimed by `infra_jobs_claim_limited` (migration 2) under per-scope advisory locks,
//!   counting the leased jobs of each scope; jobs without limits never take that path.
//! - Administration (counts, dead letters, replay) is [`QueueAdmin`](infra_core::QueueAdmin),
//!   on pooled connections ([`admin`]).
//! - Durable steps ([`StepStore`](infra_core::StepStore), migration 3): recorded steps in
//!   batches fenced on the lease ([`steps`]); a parked run is its job row due at its wake
//!   time, its waits found by an indexed key when events arrive ([`waits`]).

mod admin;
mod claim;
mod concurrency_slots;
mod enqueue;
mod flow_enqueue;
mod held_connection;
mod migrations;
mod settle;
mod steps;
mod stored_event;
mod waits;
mod wake_channel;
mod wake_times;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel_async::AsyncConnection;
use infra_core::{ClaimedJob, Enqueued, JobId, JobQueue, NewJob, Result, Settlement};
use infra_db::{Database, DbConnection, map_diesel_error};
use tokio::sync::Notify;

use self::claim::{LeaseSweep, claim_on};
use self::enqueue::enqueue_on;
use self::held_connection::HeldConnection;
use self::migrations::run_queue_migrations;
use self::settle::{heartbeat_on, settle_on};
use self::wake_channel::spawn_listener;
use self::wake_times::WakeTimes;

/// The durable PostgreSQL queue.
///
/// ```no_run
/// # async fn demo() -> infra_core::Result<()> {
/// use std::sync::Arc;
/// use infra_core::{Env, JobFilter, QueueAdmin};
/// use infra_jobs::{JobsRuntime, PgQueue};
///
/// let queue = Arc::new(PgQueue::new(infra_db::Database::from_env(&Env::process())?));
/// let runtime = JobsRuntime::new(queue.clone());
/// runtime.start().await?; // applies the queue's migrations, starts the workers
/// for dead in queue.dead_letters(&JobFilter::all(), 20).await? {
///     println!("{} failed: {}", dead.function_id, dead.error);
/// }
/// # Ok(()) }
/// ```
pub struct PgQueue {
    db: Database,
    wake: Arc<Notify>,
    /// When runs this process parked come due.
    wake_times: WakeTimes,
    sweep: LeaseSweep,
    migrated: tokio::sync::OnceCell<()>,
    /// Claims run on a connection of their own, as do settlements and heartbeats: the hot
    /// loop never waits for the pool or its checkout checks.
    claim_conn: HeldConnection,
    settle_conn: HeldConnection,
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQueue").finish_non_exhaustive()
    }
}

impl Drop for PgQueue {
    fn drop(&mut self) {
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl PgQueue {
    /// A queue over `db`'s pool; nothing happens until [`JobQueue::prepare`] (which
    /// [`JobsRuntime::start`](crate::JobsRuntime::start) calls).
    ///
    /// ```no_run
    /// # async fn demo(db: infra_db::Database) -> infra_core::Result<()> {
    /// use std::sync::Arc;
    /// use infra_jobs::{JobsRuntime, PgQueue};
    ///
    /// // The app's own database: the queue shares its pool.
    /// let runtime = JobsRuntime::new(Arc::new(PgQueue::new(db.clone())));
    /// # let _ = runtime; Ok(()) }
    /// ```
    pub fn new(db: Database) -> Self {
        PgQueue {
            db,
            wake: Arc::new(Notify::new()),
            wake_times: WakeTimes::default(),
            sweep: LeaseSweep::default(),
            migrated: tokio::sync::OnceCell::new(),
            claim_conn: HeldConnection::default(),
            settle_conn: HeldConnection::default(),
            listener: std::sync::Mutex::new(None),
        }
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Applies the queue's pending migrations (idempotent, safe to race); returns the
    /// versions applied.
    ///
    /// ```no_run
    /// # async fn demo(db: infra_db::Database) -> infra_core::Result<()> {
    /// let applied = infra_jobs::PgQueue::new(db).migrate().await?; // e.g. in a deploy step
    /// println!("queue migrations applied: {applied:?}");
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<Vec<String>> {
        run_queue_migrations(&self.db).await
    }

    /// Enqueues `jobs` on `conn`, inside whatever transaction the caller has open: the jobs
    /// exist if and only if it commits (and the wake-up is delivered on commit).
    pub async fn enqueue_on(conn: &mut DbConnection, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        enqueue_on(conn, jobs).await.map_err(map_diesel_error)
    }

    /// Migrates once per process before the first use, so sending before `start` works.
    async fn ensure_migrated(&self) -> Result<()> {
        self.migrated
            .get_or_try_init(|| async { self.migrate().await.map(|_| ()) })
            .await?;
        Ok(())
    }

    fn start_listener(&self) {
        let mut slot = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(spawn_listener(self.db.clone(), self.wake.clone()));
        }
    }
}

#[async_trait]
impl JobQueue for PgQueue {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn prepare(&self) -> Result<()> {
        self.ensure_migrated().await?;
        self.start_listener();
        Ok(())
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        self.ensure_migrated().await?;
        let mut conn = self.db.get().await?;
        if jobs
            .iter()
            .all(|j| j.idempotency_key.is_none() && !flow_enqueue::has_flow_control(j))
        {
            // One statement, atomic on its own: no BEGIN/COMMIT round trips.
            return enqueue_on(&mut conn, jobs).await.map_err(map_diesel_error);
        }
        conn.transaction(async move |conn| enqueue_on(conn, jobs).await)
            .await
            .map_err(map_diesel_error)
    }

    async fn claim(&self, worker: &str, limit: usize, lease: Duration) -> Result<Vec<ClaimedJob>> {
        let mut held = self.claim_conn.lock(&self.db).await?;
        let result = claim_on(held.conn(), &self.sweep, worker, limit, lease).await;
        held.keep_if_ok(result)
    }

    async fn heartbeat(&self, worker: &str, ids: &[JobId], lease: Duration) -> Result<()> {
        let mut held = self.settle_conn.lock(&self.db).await?;
        let result = heartbeat_on(held.conn(), worker, ids, lease).await;
        held.keep_if_ok(result)
    }

    async fn settle(&self, worker: &str, settled: Vec<(JobId, Settlement)>) -> Result<()> {
        let mut held = self.settle_conn.lock(&self.db).await?;
        let result = settle_on(held.conn(), worker, settled).await;
        held.keep_if_ok(result)
    }

    async fn wait_for_work(&self, max_wait: Duration) {
        let wait = self.wake_times.wait(max_wait);
        let _ = tokio::time::timeout(wait, self.wake.notified()).await;
    }
}
