//! Enqueueing jobs with flow control (migration 4), one by one inside the enqueue's
//! transaction: rate limits drop at enqueue (counted), throttles reserve GCRA start times,
//! singletons skip (a conflict on their unique index) or cancel the key's other jobs, batches
//! append to their key's open job, debounces merge into the waiting job no later than their
//! maximum wait.
//!
//! Invariants: GCRA times live in `infra_jobs_flow`, one row per (function, kind, key), updated
//! under its row lock, so processes sharing the queue agree; a batch's events are its job's
//! `inngest/batch` step row (its first event is also the job's own), and a full batch is due at
//! once and takes no more events.

use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::RunQueryDsl;
use infra_core::{Enqueued, NewJob, SingletonMode};
use infra_db::DbConnection;

use super::enqueue::{LIMITS_OF, SCOPES_OF, encode_slots};
use super::stored_event::encode_event;
use crate::flow_control::BATCH_STEP_ID;

#[derive(QueryableByName)]
struct Allowed {
    #[diesel(sql_type = Bool)]
    allowed: bool,
}

#[derive(QueryableByName)]
struct Start {
    #[diesel(sql_type = BigInt)]
    start: i64,
}

#[derive(QueryableByName)]
struct Upserted {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Bool)]
    inserted: bool,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Whether `job` needs this path rather than the batched insert.
pub(super) fn has_flow_control(job: &NewJob) -> bool {
    job.debounce_key.is_some()
        || job.throttle.is_some()
        || job.rate_limit.is_some()
        || job.singleton.is_some()
        || job.ordering_key.is_some()
        || job.batch.is_some()
}

/// Enqueues one job with flow control on `conn` (inside the caller's transaction).
pub(super) async fn enqueue_with_flow(
    conn: &mut DbConnection,
    job: &NewJob,
) -> diesel::QueryResult<Enqueued> {
    if let Some(rate) = &job.rate_limit {
        let step = (rate.period_ms / i64::from(rate.limit.max(1))).max(1);
        let allowed: Allowed = sql_query(
            "WITH now AS (SELECT infra_jobs_now_ms() AS n), \
             up AS (INSERT INTO infra_jobs_flow AS f (function_id, kind, key, tat) \
               SELECT $1, 'rate', $2, n + $3 FROM now \
               ON CONFLICT (function_id, kind, key) DO UPDATE \
                 SET tat = greatest(f.tat, (SELECT n FROM now)) + $3 \
                 WHERE greatest(f.tat, (SELECT n FROM now)) + $3 - (SELECT n FROM now) <= $4 \
               RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM up) AS allowed",
        )
        .bind::<Text, _>(&job.function_id)
        .bind::<Text, _>(&rate.key)
        .bind::<BigInt, _>(step)
        .bind::<BigInt, _>(rate.period_ms)
        .get_result(conn)
        .await?;
        if !allowed.allowed {
            sql_query(
                "INSERT INTO infra_jobs_rate_limited AS r (function_id, dropped) VALUES ($1, 1) \
                 ON CONFLICT (function_id) DO UPDATE SET dropped = r.dropped + 1",
            )
            .bind::<Text, _>(&job.function_id)
            .execute(conn)
            .await?;
            return Ok(Enqueued::Duplicate);
        }
    }
    let mut run_at = job.run_at_ms;
    if let Some(t) = &job.throttle {
        let step = (t.period_ms / i64::from(t.limit.max(1))).max(1);
        let start: Start = sql_query(
            "WITH now AS (SELECT infra_jobs_now_ms() AS n), \
             up AS (INSERT INTO infra_jobs_flow AS f (function_id, kind, key, tat) \
               SELECT $1, 'throttle', $2, n + $3 FROM now \
               ON CONFLICT (function_id, kind, key) DO UPDATE \
                 SET tat = greatest(f.tat, (SELECT n FROM now)) + $3 \
               RETURNING tat) \
             SELECT greatest((SELECT n FROM now), (SELECT tat FROM up) - $3 * $4) AS start",
        )
        .bind::<Text, _>(&job.function_id)
        .bind::<Text, _>(&t.key)
        .bind::<BigInt, _>(step)
        .bind::<BigInt, _>(i64::from(t.burst.max(1)))
        .get_result(conn)
        .await?;
        run_at = run_at.max(start.start);
    }
    if let Some(single) = &job.singleton
        && single.mode == SingletonMode::Cancel
    {
        // The key's other jobs: queued or parked ones leave, running ones are asked to stop;
        // all give up the key.
        sql_query(
            "WITH old AS (SELECT id, locked_by IS NULL AS idle FROM infra_jobs \
               WHERE function_id = $1 AND singleton_key = $2 AND dead_at IS NULL FOR UPDATE), \
             stopping AS (UPDATE infra_jobs SET singleton_key = NULL, cancel_requested = true \
               WHERE id IN (SELECT id FROM old WHERE NOT idle)), \
             gone AS (DELETE FROM infra_jobs WHERE id IN (SELECT id FROM old WHERE idle) RETURNING id), \
             steps AS (DELETE FROM infra_jobs_steps WHERE job_id = ANY(ARRAY(SELECT id FROM gone))), \
             waits AS (DELETE FROM infra_jobs_waits WHERE job_id = ANY(ARRAY(SELECT id FROM gone))) \
             SELECT count(*) AS n FROM old",
        )
        .bind::<Text, _>(&job.function_id)
        .bind::<Text, _>(&single.key)
        .execute(conn)
        .await?;
    }
    let event = encode_event(&job.event)?;
    if let Some(batch) = &job.batch {
        // Join the key's open batch; else open one (a racing sender that opened it first wins
        // the unique index, and this event joins theirs).
        for _ in 0..3 {
            let joined: Vec<IdRow> = sql_query(format!(
                "WITH open AS (SELECT id, batch_max FROM infra_jobs WHERE function_id = $1 \
                   AND batch_key = $2 AND locked_by IS NULL AND dead_at IS NULL FOR UPDATE), \
                 joined AS (UPDATE infra_jobs_steps s \
                   SET output = jsonb_set(s.output, '{{data}}', (s.output->'data') || jsonb_build_array($3::jsonb)) \
                   FROM open WHERE s.job_id = open.id AND s.step_id = '{BATCH_STEP_ID}' \
                   RETURNING open.id, jsonb_array_length(s.output->'data') AS size, open.batch_max), \
                 full_batch AS (UPDATE infra_jobs j SET run_at = infra_jobs_now_ms(), batch_key = NULL \
                   FROM joined WHERE j.id = joined.id AND joined.size >= joined.batch_max) \
                 SELECT id FROM joined"
            ))
            .bind::<Text, _>(&job.function_id)
            .bind::<Text, _>(&batch.key)
            .bind::<Text, _>(&event)
            .load(conn)
            .await?;
            if let Some(row) = joined.as_slice().first() {
                return Ok(Enqueued::Debounced(row.id));
            }
            let opened: Vec<IdRow> = sql_query(format!(
                "WITH ins AS (INSERT INTO infra_jobs (function_id, event, priority, run_at, max_attempts, \
                   concurrency_key, batch_key, batch_max, ordering_key, stepped, concurrency_scopes, concurrency_limits) \
                 SELECT $1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9, true, {SCOPES_OF}, {LIMITS_OF} \
                 FROM (SELECT $10::text AS s) AS slots \
                 ON CONFLICT (function_id, batch_key) WHERE batch_key IS NOT NULL AND locked_by IS NULL \
                   AND dead_at IS NULL DO NOTHING RETURNING id) \
                 INSERT INTO infra_jobs_steps (job_id, step_id, state, output) \
                 SELECT id, '{BATCH_STEP_ID}', 0, jsonb_build_object('data', jsonb_build_array($2::jsonb)) FROM ins \
                 RETURNING job_id AS id"
            ))
            .bind::<Text, _>(&job.function_id)
            .bind::<Text, _>(&event)
            .bind::<Integer, _>(job.priority)
            .bind::<BigInt, _>(run_at)
            .bind::<Integer, _>(job.max_attempts as i32)
            .bind::<Nullable<Text>, _>(job.concurrency_key.as_deref())
            .bind::<Text, _>(&batch.key)
            .bind::<Integer, _>(batch.max_size.max(1) as i32)
            .bind::<Nullable<Text>, _>(job.ordering_key.as_deref())
            .bind::<Nullable<Text>, _>(encode_slots(job))
            .load(conn)
            .await?;
            if let Some(row) = opened.as_slice().first() {
                return Ok(Enqueued::Added(row.id));
            }
        }
        return Err(diesel::result::Error::RollbackTransaction);
    }
    // The one conflict an insert can name: a debounce merges into the waiting job (never past
    // its maximum wait), else a singleton key skips.
    let on_conflict = if job.debounce_key.is_some() {
        "ON CONFLICT (function_id, debounce_key) WHERE debounce_key IS NOT NULL AND locked_by IS NULL \
           AND dead_at IS NULL \
         DO UPDATE SET event = excluded.event, \
           run_at = least(excluded.run_at, coalesce(infra_jobs.debounce_deadline, excluded.run_at)), \
           concurrency_key = excluded.concurrency_key, \
           concurrency_scopes = excluded.concurrency_scopes, \
           concurrency_limits = excluded.concurrency_limits"
    } else if job.singleton.is_some() {
        "ON CONFLICT (function_id, singleton_key) WHERE singleton_key IS NOT NULL AND dead_at IS NULL \
         DO NOTHING"
    } else {
        ""
    };
    let rows: Vec<Upserted> = sql_query(format!(
        "INSERT INTO infra_jobs AS infra_jobs (function_id, event, priority, run_at, max_attempts, \
           concurrency_key, debounce_key, debounce_deadline, singleton_key, ordering_key, \
           concurrency_scopes, concurrency_limits) \
         SELECT $1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9, $10, {SCOPES_OF}, {LIMITS_OF} \
         FROM (SELECT $11::text AS s) AS slots \
         {on_conflict} RETURNING id, (xmax = 0) AS inserted"
    ))
    .bind::<Text, _>(&job.function_id)
    .bind::<Text, _>(&event)
    .bind::<Integer, _>(job.priority)
    .bind::<BigInt, _>(run_at)
    .bind::<Integer, _>(job.max_attempts as i32)
    .bind::<Nullable<Text>, _>(job.concurrency_key.as_deref())
    .bind::<Nullable<Text>, _>(job.debounce_key.as_deref())
    .bind::<Nullable<BigInt>, _>(job.debounce_deadline_ms)
    .bind::<Nullable<Text>, _>(job.singleton.as_ref().map(|s| s.key.as_str()))
    .bind::<Nullable<Text>, _>(job.ordering_key.as_deref())
    .bind::<Nullable<Text>, _>(encode_slots(job))
    .load(conn)
    .await?;
    Ok(match rows.as_slice().first() {
        None => Enqueued::Duplicate,
        // xmax is 0 on a freshly inserted row version, set when the upsert updated one.
        Some(row) if row.inserted => Enqueued::Added(row.id),
        Some(row) => Enqueued::Debounced(row.id),
    })
}
