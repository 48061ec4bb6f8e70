//! Waits on PostgreSQL: arriving events find the waits they end through the index on
//! `(event, key_path, key_value)` — each event's value at every path its name is waited on by
//! (`infra_jobs_wait_paths`), never a scan of the waits — and the chosen waits are taken in
//! one statement.
//!
//! Invariants: a wait is taken by deleting its row, so of two deliveries (or a delivery and
//! its timeout) racing for it exactly one wins; a job's waits are all locked, in (job, id)
//! order, before any step or job row of it (which only their holder touches), so deliveries
//! and timeouts never deadlock; a run resumes at most once per delivery (its
//! first matching event); taking a step's wait records the event as the step's output and
//! makes the job due now, in the same statement; a cancelling wait deletes a parked job (and
//! its steps) or asks its worker to stop a running one.

use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::RunQueryDsl;
use infra_core::{Event, JobId, Result, Resumed, WaitCondition, WaitKind};
use infra_db::{DbConnection, map_diesel_error};
use serde_json::{Value, json};

use super::stored_event::decode_output;
use super::wake_channel::notify_statement;

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    job_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    step_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    condition: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = BigInt)]
    job_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    step_id: Option<String>,
}

#[derive(QueryableByName)]
struct OutputRow {
    #[diesel(sql_type = Nullable<Text>)]
    output: Option<String>,
}

/// Offers `events` to the waits; see the module's invariants.
pub(super) async fn deliver_on(
    conn: &mut DbConnection,
    events: &[Event],
    check: &dyn WaitCondition,
) -> Result<Vec<Resumed>> {
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let payloads: Vec<String> = events
        .iter()
        .map(serde_json::to_string)
        .collect::<std::result::Result<_, _>>()?;
    let candidates: Vec<Candidate> = sql_query("SELECT * FROM infra_jobs_wait_candidates($1, $2)")
        .bind::<Array<Text>, _>(&names)
        .bind::<Array<Text>, _>(&payloads)
        .load(conn)
        .await
        .map_err(map_diesel_error)?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // One wait per run, the first event (in send order) that its condition accepts.
    let mut chosen_ids = Vec::new();
    let mut outputs = Vec::new();
    let mut jobs: Vec<JobId> = Vec::new();
    for c in candidates {
        if jobs.contains(&c.job_id) {
            continue;
        }
        let event = &events[(c.n - 1).max(0) as usize];
        if let Some(condition) = &c.condition
            && !check.accepts(condition, event)
        {
            continue;
        }
        jobs.push(c.job_id);
        chosen_ids.push(c.id);
        outputs.push(match c.step_id {
            Some(_) => json!({ "data": event }).to_string(),
            None => String::new(),
        });
    }
    if chosen_ids.is_empty() {
        return Ok(Vec::new());
    }
    let taken: Vec<Taken> = sql_query(format!(
        "WITH chosen AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS c(wait_id, output)), \
         locked AS (SELECT w.id FROM infra_jobs_waits w WHERE w.job_id IN \
             (SELECT x.job_id FROM infra_jobs_waits x WHERE x.id = ANY($1)) \
           ORDER BY w.job_id, w.id FOR UPDATE), \
         taken AS (DELETE FROM infra_jobs_waits w USING chosen c \
           WHERE w.id = c.wait_id AND w.id IN (SELECT id FROM locked) \
           RETURNING w.job_id, w.step_id, c.output), \
         others AS (DELETE FROM infra_jobs_waits w USING taken t \
           WHERE w.job_id = t.job_id AND w.id <> ALL($1)), \
         recorded AS (UPDATE infra_jobs_steps s SET state = 0, output = t.output::jsonb, until_ms = NULL \
           FROM taken t WHERE t.step_id IS NOT NULL AND s.job_id = t.job_id AND s.step_id = t.step_id \
             AND s.state = 2), \
         woken AS (UPDATE infra_jobs j SET run_at = infra_jobs_now_ms() FROM taken t \
           WHERE t.step_id IS NOT NULL AND j.id = t.job_id AND j.locked_by IS NULL AND j.dead_at IS NULL), \
         cancelled AS (DELETE FROM infra_jobs j USING taken t \
           WHERE t.step_id IS NULL AND j.id = t.job_id AND j.locked_by IS NULL RETURNING j.id), \
         stopping AS (UPDATE infra_jobs j SET cancel_requested = true FROM taken t \
           WHERE t.step_id IS NULL AND j.id = t.job_id AND j.locked_by IS NOT NULL), \
         cancelled_steps AS (DELETE FROM infra_jobs_steps \
           WHERE job_id = ANY(ARRAY(SELECT id FROM cancelled))) \
         SELECT t.job_id, t.step_id FROM taken t CROSS JOIN ({wake}) AS wake",
        wake = notify_statement(),
    ))
    .bind::<Array<BigInt>, _>(&chosen_ids)
    .bind::<Array<Text>, _>(&outputs)
    .load(conn)
    .await
    .map_err(map_diesel_error)?;
    Ok(taken
        .into_iter()
        .map(|t| Resumed {
            job_id: t.job_id,
            kind: match t.step_id {
                Some(id) => WaitKind::Step(id),
                None => WaitKind::Cancel,
            },
        })
        .collect())
}

/// Ends a timed-out wait: records `{"data": null}` unless an event took it first; returns
/// the step's output either way (`None` if it is not a step of the job).
pub(super) async fn expire_wait_on(
    conn: &mut DbConnection,
    job: JobId,
    step_id: &str,
) -> Result<Option<Value>> {
    let expired: Vec<OutputRow> = sql_query(
        "WITH locked AS (SELECT id FROM infra_jobs_waits WHERE job_id = $1 ORDER BY id FOR UPDATE), \
         gone AS (DELETE FROM infra_jobs_waits WHERE id IN (SELECT id FROM locked)) \
         UPDATE infra_jobs_steps SET state = 0, output = '{\"data\": null}', until_ms = NULL \
         WHERE job_id = $1 AND step_id = $2 AND state = 2 \
           AND (SELECT count(*) FROM locked) >= 0 \
         RETURNING output::text AS output",
    )
    .bind::<BigInt, _>(job)
    .bind::<Text, _>(step_id)
    .load(conn)
    .await
    .map_err(map_diesel_error)?;
    if let Some(row) = expired.into_iter().next() {
        return row.output.as_deref().map(decode_output).transpose();
    }
    // An event took the wait first: its output, read with a fresh snapshot.
    let recorded: Vec<OutputRow> = sql_query(
        "SELECT output::text AS output FROM infra_jobs_steps \
         WHERE job_id = $1 AND step_id = $2 AND state = 0",
    )
    .bind::<BigInt, _>(job)
    .bind::<Text, _>(step_id)
    .load(conn)
    .await
    .map_err(map_diesel_error)?;
    recorded
        .into_iter()
        .next()
        .and_then(|r| r.output)
        .as_deref()
        .map(decode_output)
        .transpose()
}
