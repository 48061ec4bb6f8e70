//! Settling and heartbeats: finished jobs in batches, one statement per kind of settlement;
//! leases of running jobs extended in one statement.
//!
//! Invariants: a settlement or heartbeat applies only to jobs the worker still holds
//! (`locked_by`), so a job whose lease another worker took over is left alone; a completed
//! job leaves the table; a dead letter keeps its row (`dead_at`) for replay; a settlement
//! that frees a concurrency slot wakes the workers.

use std::time::Duration;

use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl;
use infra_core::{JobId, Result, Settlement};
use infra_db::{DbConnection, map_diesel_error};

use super::wake_channel::CHANNEL;

/// `statement` (an UPDATE or DELETE of settled jobs returning `limited`) followed by a wake-up
/// when one of them had concurrency limits: its slot is free, and workers holding back jobs
/// of that scope should look again now rather than at their next poll.
fn waking_when_limited(statement: &str) -> String {
    format!(
        "WITH settled AS ({statement}) \
         SELECT pg_notify('{CHANNEL}', '') FROM (SELECT 1 FROM settled WHERE limited LIMIT 1) AS freed"
    )
}

/// Extends `worker`'s leases of `ids` to `lease` from now.
pub(crate) async fn heartbeat_on(
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

/// Settles `worker`'s jobs, one statement per kind of settlement.
pub(crate) async fn settle_on(
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
        // A stepped job's steps and waits leave with it; `= ANY(ARRAY(…))` keeps those
        // deletes on their indexes (and free when no job of the batch stepped).
        sql_query(format!(
            "WITH settled AS (DELETE FROM infra_jobs WHERE id = ANY($1) AND locked_by = $2 \
               RETURNING id, stepped, concurrency_scopes IS NOT NULL AS limited), \
             steps AS (DELETE FROM infra_jobs_steps \
               WHERE job_id = ANY(ARRAY(SELECT id FROM settled WHERE stepped))), \
             waits AS (DELETE FROM infra_jobs_waits \
               WHERE job_id = ANY(ARRAY(SELECT id FROM settled WHERE stepped))) \
             SELECT pg_notify('{CHANNEL}', '') FROM (SELECT 1 FROM settled WHERE limited LIMIT 1) AS freed"
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
