//! `PgQueue`: the durable job queue on PostgreSQL (feature `postgres`).
//!
//! - Its tables come from its own embedded migrations (`migrations/`), tracked in
//!   `infra_jobs_migrations`, separate from the app's, applied by [`JobQueue::prepare`] under
//!   an advisory lock so several workers may start at once.
//! - Workers claim batches with `FOR UPDATE SKIP LOCKED` and hold a lease (`locked_until`)
//!   that heartbeats extend; a sweep hands expired leases back, so a crashed worker's jobs run
//!   again.
//! - Enqueues `pg_notify` in the same transaction: idle workers, `LISTEN`ing on a dedicated
//!   connection, wake when it commits; they also poll in case a notification is lost.
//! - Settlements arrive in batches: one statement per kind of settlement.
//! - Concurrency limits hold across every process sharing the queue: jobs with limits are
//!   claimed by `infra_jobs_claim_limited` (migration 0002) under per-scope advisory locks,
//!   counting the leased jobs of each scope; jobs without limits never take that path.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use futures::StreamExt;
use infra_core::{
    ClaimedJob, DeadLetter, Enqueued, Error, ErrorKind, Event, FunctionQueueStats, JobId, JobQueue,
    NewJob, Result, Settlement,
};
use infra_db::{Database, DbConnection, map_diesel_error};
use tokio::sync::Notify;

use crate::event_id::now_ms;

/// The channel enqueues notify and idle workers listen on.
const CHANNEL: &str = "infra_jobs";

/// The queue's migrations, in order: (version, SQL).
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001", include_str!("../migrations/0001_infra_jobs.sql")),
    (
        "0002",
        include_str!("../migrations/0002_concurrency_slots.sql"),
    ),
];

/// A key of `pg_advisory_xact_lock` serialising migrations ("infra_jobs" in ASCII).
const MIGRATION_LOCK: i64 = 0x696e_6672_615f_6a6f;

/// The durable PostgreSQL queue.
pub struct PgQueue {
    db: Database,
    wake: Arc<Notify>,
    last_sweep_ms: AtomicI64,
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

/// A connection of its own (outside the pool) kept by one worker loop; dropped after an
/// error and re-opened on next use.
#[derive(Default)]
struct HeldConnection {
    slot: tokio::sync::Mutex<Option<DbConnection>>,
}

struct HeldGuard<'a>(tokio::sync::MutexGuard<'a, Option<DbConnection>>);

impl HeldConnection {
    async fn lock(&self, db: &Database) -> Result<HeldGuard<'_>> {
        let mut slot = self.slot.lock().await;
        if slot.is_none() {
            *slot = Some(db.dedicated_connection().await?);
        }
        Ok(HeldGuard(slot))
    }
}

impl HeldGuard<'_> {
    fn conn(&mut self) -> &mut DbConnection {
        self.0.as_mut().expect("opened by lock")
    }

    /// Keeps the connection unless `result` failed (it may be broken or mid-transaction).
    fn keep_if_ok<T>(mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            *self.0 = None;
        }
        result
    }
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    function_id: String,
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
    #[diesel(sql_type = Integer)]
    priority: i32,
    #[diesel(sql_type = Nullable<Text>)]
    concurrency_key: Option<String>,
    #[diesel(sql_type = BigInt)]
    enqueued_at: i64,
    #[diesel(sql_type = BigInt)]
    run_at: i64,
    /// A due job with concurrency limits, picked but not claimed: the fast claim statement
    /// leaves those to `infra_jobs_claim_limited`.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    limited: bool,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct UpsertRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    inserted: bool,
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    function_id: String,
    #[diesel(sql_type = Text)]
    key: String,
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = Text)]
    version: String,
}

#[derive(QueryableByName)]
struct DeadRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    function_id: String,
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = BigInt)]
    dead_at: i64,
}

#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = Text)]
    function_id: String,
    #[diesel(sql_type = BigInt)]
    ready: i64,
    #[diesel(sql_type = BigInt)]
    scheduled: i64,
    #[diesel(sql_type = BigInt)]
    running: i64,
    #[diesel(sql_type = BigInt)]
    dead: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest: Option<i64>,
}

/// A job's concurrency slots as the JSON `[[scope, limit], …]` the insert statements unpack
/// into `concurrency_scopes` and `concurrency_limits`; `None` (both columns NULL) without
/// limits.
fn encode_slots(job: &NewJob) -> Option<String> {
    if job.concurrency.is_empty() {
        return None;
    }
    let pairs: Vec<serde_json::Value> = job
        .concurrency
        .iter()
        .map(|s| serde_json::json!([s.scope, s.limit.max(1)]))
        .collect();
    Some(serde_json::Value::from(pairs).to_string())
}

/// SQL unpacking the slots' JSON `$s` (see [`encode_slots`]) into the two columns.
const SCOPES_OF: &str = "CASE WHEN s IS NULL THEN NULL ELSE ARRAY(SELECT x->>0 FROM jsonb_array_elements(s::jsonb) WITH ORDINALITY AS t(x, o) ORDER BY o) END";
const LIMITS_OF: &str = "CASE WHEN s IS NULL THEN NULL ELSE ARRAY(SELECT (x->>1)::integer FROM jsonb_array_elements(s::jsonb) WITH ORDINALITY AS t(x, o) ORDER BY o) END";

/// `statement` (an UPDATE or DELETE of settled jobs returning `limited`) followed by a wake-up
/// when one of them had concurrency limits: its slot is free, and workers holding back jobs
/// of that scope should look again now rather than at their next poll.
fn waking_when_limited(statement: &str) -> String {
    format!(
        "WITH settled AS ({statement}) \
         SELECT pg_notify('{CHANNEL}', '') FROM (SELECT 1 FROM settled WHERE limited LIMIT 1) AS freed"
    )
}

fn decode_event(raw: &str) -> Result<Event> {
    serde_json::from_str(raw).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("stored job event is not an event: {e}"),
        )
        .with_source(e)
    })
}

impl PgQueue {
    /// A queue over `db`'s pool; nothing happens until [`JobQueue::prepare`].
    pub fn new(db: Database) -> Self {
        PgQueue {
            db,
            wake: Arc::new(Notify::new()),
            last_sweep_ms: AtomicI64::new(0),
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

    /// Applies the queue's pending migrations (idempotent, safe to race).
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let mut conn = self.db.get().await?;
        // diesel-async's transaction: a connection whose transaction was dropped mid-way counts
        // as broken, so the pool never hands it out still inside it.
        conn.transaction(async |conn| migrate_on(conn).await)
            .await
            .map_err(map_diesel_error)
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

    /// Hands expired leases back to the queue, at most once a second per process.
    async fn sweep_expired_leases(&self, conn: &mut DbConnection) -> Result<()> {
        let now = now_ms();
        let last = AtomicI64::load(&self.last_sweep_ms, Ordering::Relaxed);
        if now - last < 1_000
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        sql_query(
            "UPDATE infra_jobs SET locked_by = NULL, locked_until = NULL \
             WHERE locked_by IS NOT NULL AND locked_until < infra_jobs_now_ms() AND dead_at IS NULL",
        )
        .execute(conn)
        .await
        .map_err(map_diesel_error)?;
        Ok(())
    }

    fn start_listener(&self) {
        let mut slot = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        let db = self.db.clone();
        let wake = self.wake.clone();
        *slot = Some(tokio::spawn(async move {
            loop {
                if let Err(err) = listen(&db, &wake).await {
                    tracing::warn!(error = %err, "LISTEN connection lost; workers poll until it is back");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
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

/// Applies the pending migrations; the advisory lock makes racing starts wait their turn.
async fn migrate_on(conn: &mut DbConnection) -> diesel::QueryResult<Vec<String>> {
    sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(conn)
        .await?;
    sql_query(
        "CREATE TABLE IF NOT EXISTS infra_jobs_migrations \
         (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(conn)
    .await?;
    let done: Vec<VersionRow> = sql_query("SELECT version FROM infra_jobs_migrations")
        .load(conn)
        .await?;
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if done.iter().any(|d| d.version == *version) {
            continue;
        }
        conn.batch_execute(sql).await?;
        sql_query("INSERT INTO infra_jobs_migrations (version) VALUES ($1)")
            .bind::<Text, _>(*version)
            .execute(conn)
            .await?;
        applied.push((*version).to_owned());
    }
    Ok(applied)
}

async fn enqueue_on(
    conn: &mut DbConnection,
    jobs: Vec<NewJob>,
) -> diesel::QueryResult<Vec<Enqueued>> {
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    // Idempotency: claim every key in one statement; a key held inside its window is a
    // duplicate. Keys repeated inside the batch: the first wins.
    let mut keyed: Vec<usize> = Vec::new();
    {
        let mut seen = std::collections::HashSet::new();
        for (i, job) in jobs.iter().enumerate() {
            if let Some(key) = &job.idempotency_key {
                if seen.insert((job.function_id.as_str(), key.as_str())) {
                    keyed.push(i);
                } else {
                    results[i] = Some(Enqueued::Duplicate);
                }
            }
        }
    }
    if !keyed.is_empty() {
        let fns: Vec<&str> = keyed
            .iter()
            .map(|&i| jobs[i].function_id.as_str())
            .collect();
        let keys: Vec<&str> = keyed
            .iter()
            .map(|&i| jobs[i].idempotency_key.as_deref().unwrap_or_default())
            .collect();
        let windows: Vec<i64> = keyed
            .iter()
            .map(|&i| jobs[i].idempotency_window.as_millis() as i64)
            .collect();
        let won: Vec<KeyRow> = sql_query(
            "INSERT INTO infra_jobs_idempotency AS i (function_id, key, expires_at) \
             SELECT f, k, infra_jobs_now_ms() + w FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(f, k, w) \
             ON CONFLICT (function_id, key) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE i.expires_at <= infra_jobs_now_ms() \
             RETURNING function_id, key",
        )
        .bind::<Array<Text>, _>(&fns)
        .bind::<Array<Text>, _>(&keys)
        .bind::<Array<BigInt>, _>(&windows)
        .load(conn)
        .await?;
        let won: std::collections::HashSet<(String, String)> =
            won.into_iter().map(|r| (r.function_id, r.key)).collect();
        for &i in &keyed {
            let k = (
                jobs[i].function_id.clone(),
                jobs[i].idempotency_key.clone().unwrap_or_default(),
            );
            if !won.contains(&k) {
                results[i] = Some(Enqueued::Duplicate);
            }
        }
    }
    // Debounced jobs, one by one (rare): merge into the waiting job or insert.
    for (i, job) in jobs.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let Some(key) = &job.debounce_key else {
            continue;
        };
        let event = serde_json::to_string(&job.event)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        let row: UpsertRow = sql_query(format!(
            "INSERT INTO infra_jobs (function_id, event, priority, run_at, max_attempts, concurrency_key, debounce_key, \
               concurrency_scopes, concurrency_limits) \
             SELECT $1, $2::jsonb, $3, $4, $5, $6, $7, {SCOPES_OF}, {LIMITS_OF} FROM (SELECT $8::text AS s) AS slots \
             ON CONFLICT (function_id, debounce_key) WHERE debounce_key IS NOT NULL AND locked_by IS NULL AND dead_at IS NULL \
             DO UPDATE SET event = excluded.event, run_at = excluded.run_at, \
               concurrency_key = excluded.concurrency_key, \
               concurrency_scopes = excluded.concurrency_scopes, \
               concurrency_limits = excluded.concurrency_limits \
             RETURNING id, (xmax = 0) AS inserted"
        ))
        .bind::<Text, _>(&job.function_id)
        .bind::<Text, _>(&event)
        .bind::<Integer, _>(job.priority)
        .bind::<BigInt, _>(job.run_at_ms)
        .bind::<Integer, _>(job.max_attempts as i32)
        .bind::<Nullable<Text>, _>(job.concurrency_key.as_deref())
        .bind::<Text, _>(key)
        .bind::<Nullable<Text>, _>(encode_slots(job))
        .get_result(conn)
        .await?;
        // xmax is 0 on a freshly inserted row version, set when the upsert updated one.
        results[i] = Some(if row.inserted {
            Enqueued::Added(row.id)
        } else {
            Enqueued::Debounced(row.id)
        });
    }
    // Everything else in one insert; ids come from the sequence in input order.
    let plain: Vec<usize> = (0..jobs.len()).filter(|&i| results[i].is_none()).collect();
    if !plain.is_empty() {
        let mut fns = Vec::with_capacity(plain.len());
        let mut events = Vec::with_capacity(plain.len());
        let mut prios = Vec::with_capacity(plain.len());
        let mut run_ats = Vec::with_capacity(plain.len());
        let mut maxes = Vec::with_capacity(plain.len());
        let mut ckeys: Vec<Option<&str>> = Vec::with_capacity(plain.len());
        let mut slots: Vec<Option<String>> = Vec::with_capacity(plain.len());
        for &i in &plain {
            let job = &jobs[i];
            fns.push(job.function_id.as_str());
            events.push(
                serde_json::to_string(&job.event)
                    .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?,
            );
            prios.push(job.priority);
            run_ats.push(job.run_at_ms);
            maxes.push(job.max_attempts as i32);
            ckeys.push(job.concurrency_key.as_deref());
            slots.push(encode_slots(job));
        }
        // The wake-up rides in the same statement: one round trip for a plain send. A batch
        // without concurrency limits leaves out the slot columns: unpacking them costs
        // planning time on every send (statements are planned per execution).
        let limited = slots.iter().any(Option::is_some);
        let (slot_columns, slot_values, slot_param, slot_alias) = if limited {
            (
                ", concurrency_scopes, concurrency_limits",
                format!(", {SCOPES_OF}, {LIMITS_OF}"),
                ", $7::text[]",
                ", s",
            )
        } else {
            ("", String::new(), "", "")
        };
        let mut insert = sql_query(format!(
            "WITH ins AS (INSERT INTO infra_jobs (function_id, event, priority, run_at, max_attempts, concurrency_key{slot_columns}) \
               SELECT f, e::jsonb, p, r, m, c{slot_values} \
               FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::int[], $6::text[]{slot_param}) \
                    WITH ORDINALITY AS u(f, e, p, r, m, c{slot_alias}, n) \
               ORDER BY n RETURNING id) \
             SELECT ins.id FROM ins CROSS JOIN (SELECT pg_notify('infra_jobs', '')) AS wake"
        ))
        .into_boxed::<diesel::pg::Pg>()
        .bind::<Array<Text>, _>(&fns)
        .bind::<Array<Text>, _>(&events)
        .bind::<Array<Integer>, _>(&prios)
        .bind::<Array<BigInt>, _>(&run_ats)
        .bind::<Array<Integer>, _>(&maxes)
        .bind::<Array<Nullable<Text>>, _>(&ckeys);
        if limited {
            insert = insert.bind::<Array<Nullable<Text>>, _>(&slots);
        }
        let mut ids: Vec<IdRow> = insert.load(conn).await?;
        ids.sort_by_key(|r| r.id);
        for (&i, row) in plain.iter().zip(ids) {
            results[i] = Some(Enqueued::Added(row.id));
        }
    }
    let debounced = jobs.iter().any(|j| j.debounce_key.is_some());
    if debounced && plain.is_empty() {
        sql_query(format!("SELECT pg_notify('{CHANNEL}', '')"))
            .execute(conn)
            .await?;
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Enqueued::Duplicate))
        .collect())
}

impl PgQueue {
    async fn claim_on(
        &self,
        conn: &mut DbConnection,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>> {
        self.sweep_expired_leases(conn).await?;
        // One statement claims the batch's jobs without limits, as it always did, and returns
        // the due jobs with limits it picked (only those whose scopes look free, so a full
        // scope's backlog does not crowd the batch) unclaimed. Without limits in the batch,
        // that is the whole claim: one round trip, and the pre-filter is never evaluated.
        let mut rows: Vec<ClaimRow> = sql_query(
            "WITH c AS ( \
               SELECT id, concurrency_scopes IS NOT NULL AS limited FROM infra_jobs \
               WHERE dead_at IS NULL AND locked_by IS NULL AND run_at <= infra_jobs_now_ms() \
                 AND (concurrency_scopes IS NULL OR infra_jobs_has_room(concurrency_scopes, concurrency_limits)) \
               ORDER BY priority DESC, run_at, id \
               LIMIT $1 FOR UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE infra_jobs j \
               SET locked_by = $2, locked_until = infra_jobs_now_ms() + $3, attempts = j.attempts + 1 \
               FROM c WHERE j.id = c.id AND NOT c.limited \
               RETURNING j.id, j.function_id, j.event::text AS event, j.attempts, j.max_attempts, \
                         j.priority, j.concurrency_key, j.enqueued_at, j.run_at) \
             SELECT *, false AS limited FROM claimed \
             UNION ALL \
             SELECT id, '', '', 0, 0, 0, NULL, 0, 0, true FROM c WHERE limited",
        )
        .bind::<BigInt, _>(limit as i64)
        .bind::<Text, _>(worker)
        .bind::<BigInt, _>(lease.as_millis() as i64)
        .load(conn)
        .await
        .map_err(map_diesel_error)?;
        let limited: Vec<JobId> = rows.iter().filter(|r| r.limited).map(|r| r.id).collect();
        if !limited.is_empty() {
            // The exact decision, under the scopes' locks (see migration 0002): a second
            // round trip only for batches holding jobs with limits.
            rows.retain(|r| !r.limited);
            let admitted: Result<Vec<ClaimRow>> =
                sql_query("SELECT *, false AS limited FROM infra_jobs_claim_limited($1, $2, $3)")
                    .bind::<Array<BigInt>, _>(&limited)
                    .bind::<Text, _>(worker)
                    .bind::<BigInt, _>(lease.as_millis() as i64)
                    .load(conn)
                    .await
                    .map_err(map_diesel_error);
            match admitted {
                Ok(admitted) => rows.extend(admitted),
                // The jobs claimed above are ours already: run them rather than leave them
                // to their leases. The held-back ones stay due for the next claim.
                Err(err) if !rows.is_empty() => {
                    tracing::warn!(error = %err, "claiming jobs with concurrency limits failed");
                }
                Err(err) => return Err(err),
            }
        }
        let mut jobs = Vec::with_capacity(rows.len());
        for r in rows {
            jobs.push(ClaimedJob {
                id: r.id,
                function_id: r.function_id,
                event: decode_event(&r.event)?,
                attempt: r.attempts.max(1) as u32,
                max_attempts: r.max_attempts.max(1) as u32,
                priority: r.priority,
                concurrency_key: r.concurrency_key,
                enqueued_at_ms: r.enqueued_at,
                run_at_ms: r.run_at,
            });
        }
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at_ms.cmp(&b.run_at_ms))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }
}

async fn heartbeat_on(
    conn: &mut DbConnection,
    worker: &str,
    ids: &[JobId],
    lease: Duration,
) -> Result<()> {
    sql_query(
        "UPDATE infra_jobs SET locked_until = infra_jobs_now_ms() + $3 \
             WHERE id = ANY($1) AND locked_by = $2",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Text, _>(worker)
    .bind::<BigInt, _>(lease.as_millis() as i64)
    .execute(conn)
    .await
    .map_err(map_diesel_error)?;
    Ok(())
}

async fn settle_on(
    conn: &mut DbConnection,
    worker: &str,
    settled: Vec<(JobId, Settlement)>,
) -> Result<()> {
    let mut done = Vec::new();
    let (mut retry_ids, mut retry_at, mut retry_err) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rel_ids, mut rel_at) = (Vec::new(), Vec::new());
    let (mut dead_ids, mut dead_err) = (Vec::new(), Vec::new());
    for (id, s) in settled {
        match s {
            Settlement::Completed => done.push(id),
            Settlement::Retry { run_at_ms, error } => {
                retry_ids.push(id);
                retry_at.push(run_at_ms);
                retry_err.push(error);
            }
            Settlement::Release { run_at_ms } => {
                rel_ids.push(id);
                rel_at.push(run_at_ms);
            }
            Settlement::Dead { error } => {
                dead_ids.push(id);
                dead_err.push(error);
            }
        }
    }
    if !done.is_empty() {
        sql_query(waking_when_limited(
            "DELETE FROM infra_jobs WHERE id = ANY($1) AND locked_by = $2 \
             RETURNING concurrency_scopes IS NOT NULL AS limited",
        ))
        .bind::<Array<BigInt>, _>(&done)
        .bind::<Text, _>(worker)
        .execute(conn)
        .await
        .map_err(map_diesel_error)?;
    }
    if !retry_ids.is_empty() {
        sql_query(waking_when_limited(
            "UPDATE infra_jobs j SET run_at = u.r, last_error = u.e, locked_by = NULL, \
                 locked_until = NULL, debounce_key = NULL \
                 FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(i, r, e) \
                 WHERE j.id = u.i AND j.locked_by = $4 \
                 RETURNING j.concurrency_scopes IS NOT NULL AS limited",
        ))
        .bind::<Array<BigInt>, _>(&retry_ids)
        .bind::<Array<BigInt>, _>(&retry_at)
        .bind::<Array<Text>, _>(&retry_err)
        .bind::<Text, _>(worker)
        .execute(conn)
        .await
        .map_err(map_diesel_error)?;
    }
    if !rel_ids.is_empty() {
        sql_query(waking_when_limited(
            "UPDATE infra_jobs j SET run_at = u.r, attempts = greatest(j.attempts - 1, 0), \
                 locked_by = NULL, locked_until = NULL, debounce_key = NULL \
                 FROM unnest($1::bigint[], $2::bigint[]) AS u(i, r) \
                 WHERE j.id = u.i AND j.locked_by = $3 \
                 RETURNING j.concurrency_scopes IS NOT NULL AS limited",
        ))
        .bind::<Array<BigInt>, _>(&rel_ids)
        .bind::<Array<BigInt>, _>(&rel_at)
        .bind::<Text, _>(worker)
        .execute(conn)
        .await
        .map_err(map_diesel_error)?;
    }
    if !dead_ids.is_empty() {
        sql_query(waking_when_limited(
            "UPDATE infra_jobs j SET dead_at = infra_jobs_now_ms(), last_error = u.e, \
                 locked_by = NULL, locked_until = NULL, debounce_key = NULL \
                 FROM unnest($1::bigint[], $2::text[]) AS u(i, e) \
                 WHERE j.id = u.i AND j.locked_by = $3 \
                 RETURNING j.concurrency_scopes IS NOT NULL AS limited",
        ))
        .bind::<Array<BigInt>, _>(&dead_ids)
        .bind::<Array<Text>, _>(&dead_err)
        .bind::<Text, _>(worker)
        .execute(conn)
        .await
        .map_err(map_diesel_error)?;
    }
    Ok(())
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
            .all(|j| j.idempotency_key.is_none() && j.debounce_key.is_none())
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
        let result = self.claim_on(held.conn(), worker, limit, lease).await;
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
        let _ = tokio::time::timeout(max_wait, self.wake.notified()).await;
    }

    async fn dead_letters(
        &self,
        function_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let mut conn = self.db.get().await?;
        let rows: Vec<DeadRow> = sql_query(
            "SELECT id, function_id, event::text AS event, attempts, last_error, dead_at \
             FROM infra_jobs WHERE dead_at IS NOT NULL AND ($1::text IS NULL OR function_id = $1) \
             ORDER BY dead_at DESC, id DESC LIMIT $2",
        )
        .bind::<Nullable<Text>, _>(function_id)
        .bind::<BigInt, _>(limit as i64)
        .load(&mut conn)
        .await
        .map_err(map_diesel_error)?;
        rows.into_iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.id,
                    function_id: r.function_id,
                    event: decode_event(&r.event)?,
                    attempts: r.attempts.max(0) as u32,
                    error: r.last_error.unwrap_or_default(),
                    failed_at_ms: r.dead_at,
                })
            })
            .collect()
    }

    async fn replay(&self, id: JobId) -> Result<()> {
        let mut conn = self.db.get().await?;
        let n = sql_query(
            "UPDATE infra_jobs SET dead_at = NULL, attempts = 0, last_error = NULL, \
             run_at = infra_jobs_now_ms() WHERE id = $1 AND dead_at IS NOT NULL",
        )
        .bind::<BigInt, _>(id)
        .execute(&mut conn)
        .await
        .map_err(map_diesel_error)?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no dead letter with id {id}"),
            ));
        }
        sql_query(format!("SELECT pg_notify('{CHANNEL}', '')"))
            .execute(&mut conn)
            .await
            .map_err(map_diesel_error)?;
        Ok(())
    }

    async fn stats(&self) -> Result<Vec<FunctionQueueStats>> {
        let mut conn = self.db.get().await?;
        if self.migrated.get().is_none() {
            // Before this process migrated: the tables may not exist yet, which is an empty
            // queue rather than an error (a health check must not create them).
            let exists: Vec<VersionRow> = sql_query(
                "SELECT 'infra_jobs' AS version WHERE to_regclass('infra_jobs') IS NOT NULL",
            )
            .load(&mut conn)
            .await
            .map_err(map_diesel_error)?;
            if exists.is_empty() {
                return Ok(Vec::new());
            }
        }
        let rows: Vec<StatsRow> = sql_query(
            "SELECT function_id, \
               count(*) FILTER (WHERE dead_at IS NULL AND locked_by IS NULL AND run_at <= t.n) AS ready, \
               count(*) FILTER (WHERE dead_at IS NULL AND locked_by IS NULL AND run_at > t.n) AS scheduled, \
               count(*) FILTER (WHERE dead_at IS NULL AND locked_by IS NOT NULL) AS running, \
               count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead, \
               max(t.n - run_at) FILTER (WHERE dead_at IS NULL AND locked_by IS NULL AND run_at <= t.n) AS oldest \
             FROM infra_jobs, (SELECT infra_jobs_now_ms() AS n) t \
             GROUP BY function_id ORDER BY function_id",
        )
        .load(&mut conn)
        .await
        .map_err(map_diesel_error)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut s = FunctionQueueStats::new(r.function_id);
                s.ready = r.ready.max(0) as u64;
                s.scheduled = r.scheduled.max(0) as u64;
                s.running = r.running.max(0) as u64;
                s.dead = r.dead.max(0) as u64;
                s.oldest_ready_age_ms = r.oldest.map(|o| o.max(0) as u64);
                s
            })
            .collect())
    }
}
