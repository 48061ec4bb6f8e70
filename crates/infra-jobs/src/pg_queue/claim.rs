//! Claiming: a batch of due jobs in one statement under `FOR UPDATE SKIP LOCKED`, leased to
//! the worker; jobs with concurrency limits in a second round trip that decides under their
//! scopes' advisory locks (`infra_jobs_claim_limited`, migration 2).
//!
//! Invariants: a claimed job is leased (`locked_by`, `locked_until`) and its attempt
//! counted in the same statement; jobs come back highest priority first, then earliest due,
//! then oldest; expired leases are handed back (at most once a second per process) before
//! claiming, so a crashed worker's jobs run again.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::RunQueryDsl;
use infra_core::{ClaimedJob, JobId, Result};
use infra_db::{DbConnection, map_diesel_error};

use super::stored_event::decode_event;
use crate::event_id::now_ms;

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

/// The sweep of expired leases, run before claims at most once a second per process.
#[derive(Default)]
pub(crate) struct LeaseSweep {
    last_ms: AtomicI64,
}

impl LeaseSweep {
    /// Hands expired leases back to the queue, unless this process did within the second.
    async fn run(&self, conn: &mut DbConnection) -> Result<()> {
        let now = now_ms();
        let last = AtomicI64::load(&self.last_ms, Ordering::Relaxed);
        if now - last < 1_000
            || self
                .last_ms
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
}

/// Claims up to `limit` due jobs for `worker` on `conn`, leased for `lease`.
pub(crate) async fn claim_on(
    conn: &mut DbConnection,
    sweep: &LeaseSweep,
    worker: &str,
    limit: usize,
    lease: Duration,
) -> Result<Vec<ClaimedJob>> {
    sweep.run(conn).await?;
    // One statement claims the batch's jobs without limits and returns
    // the due jobs with limits it picked (only those whose scopes look free, so a full
    // scope's backlog does not crowd the batch) unclaimed. Without limits in the batch,
    // that is the whole claim: one round trip, and the pre-filter is never evaluated.
    let mut rows: Vec<ClaimRow> = sql_query(
            "WITH c AS ( \
               SELECT id, concurrency_scopes IS NOT NULL AS limited FROM infra_jobs \
               WHERE dead_at IS NULL AND locked_by IS NULL AND run_at <= infra_jobs_now_ms() \
                 AND (concurrency_scopes IS NULL OR infra_jobs_has_room(concurrency_scopes, concurrency_limits)) \
                 AND (ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM infra_jobs e \
                   WHERE e.function_id = infra_jobs.function_id AND e.ordering_key = infra_jobs.ordering_key \
                     AND e.id < infra_jobs.id AND e.ordering_key IS NOT NULL AND e.dead_at IS NULL)) \
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
