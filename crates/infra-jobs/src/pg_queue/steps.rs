//! [`StepStore`] for the PostgreSQL queue (migration 3): steps recorded in batches, one
//! statement each; a park is one transaction (the job unleased and due at its wake time, its
//! planned step, its waits, the jobs it enqueues); waits are matched in [`waits`](super::waits).
//!
//! Invariants: every write is fenced on `locked_by = worker` (and no cancellation asked), so
//! a worker whose lease was taken over writes nothing; recording a step resets the job's
//! attempts to 1 and marks it `stepped`, in the same statement as the step's row.

use std::sync::Arc;

use async_trait::async_trait;
use diesel::sql_types::{Array, BigInt, Nullable, SmallInt, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, RunQueryDsl};
use infra_core::{
    Event, FinishedStep, JobId, ParkedRun, Result, Resumed, StepState, StepStore, StoredStep,
    WaitCondition, WaitKind,
};
use infra_db::{DbConnection, map_diesel_error};
use serde_json::Value;

use super::PgQueue;
use super::enqueue::enqueue_on;
use super::stored_event::decode_output;
use super::waits::{deliver_on, expire_wait_on};
use super::wake_channel::notify_statement;

#[derive(QueryableByName)]
struct StepRow {
    #[diesel(sql_type = BigInt)]
    job_id: i64,
    #[diesel(sql_type = Text)]
    step_id: String,
    #[diesel(sql_type = SmallInt)]
    state: i16,
    #[diesel(sql_type = Nullable<BigInt>)]
    until_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    output: Option<String>,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

fn held_flags(jobs: &[JobId], held: &[IdRow]) -> Vec<bool> {
    jobs.iter()
        .map(|j| held.iter().any(|h| h.id == *j))
        .collect()
}

/// Parks `runs` on `conn` inside the caller's transaction; returns the held ones' ids.
async fn park_on(
    conn: &mut DbConnection,
    worker: &str,
    runs: Vec<ParkedRun>,
) -> diesel::QueryResult<Vec<IdRow>> {
    let ids: Vec<i64> = runs.iter().map(|r| r.job_id).collect();
    let steps: Vec<&str> = runs.iter().map(|r| r.step_id.as_str()).collect();
    let untils: Vec<i64> = runs.iter().map(|r| r.until_ms).collect();
    let states: Vec<i16> = runs
        .iter()
        .map(|r| if r.wait.is_some() { 2 } else { 1 })
        .collect();
    let held: Vec<IdRow> = sql_query(format!(
        "WITH p AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::smallint[]) \
           AS p(job_id, step_id, until_ms, state)), \
         held AS (UPDATE infra_jobs j SET locked_by = NULL, locked_until = NULL, attempts = 0, \
             run_at = p.until_ms, stepped = true, debounce_key = NULL \
           FROM p WHERE j.id = p.job_id AND j.locked_by = $5 AND NOT j.cancel_requested \
           RETURNING j.id), \
         planned AS (INSERT INTO infra_jobs_steps (job_id, step_id, state, until_ms) \
           SELECT p.job_id, p.step_id, p.state, p.until_ms FROM p JOIN held h ON h.id = p.job_id \
           ON CONFLICT (job_id, step_id) DO UPDATE SET state = excluded.state, \
             until_ms = excluded.until_ms WHERE infra_jobs_steps.state <> 0), \
         old_waits AS (DELETE FROM infra_jobs_waits w USING held h WHERE w.job_id = h.id) \
         SELECT held.id FROM held CROSS JOIN ({wake}) AS wake",
        wake = notify_statement(),
    ))
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<Text>, _>(&steps)
    .bind::<Array<BigInt>, _>(&untils)
    .bind::<Array<SmallInt>, _>(&states)
    .bind::<Text, _>(worker)
    .load(conn)
    .await?;
    let (mut w_job, mut w_event, mut w_path, mut w_value, mut w_cond, mut w_step) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut enqueue = Vec::new();
    for run in runs {
        if !held.iter().any(|h| h.id == run.job_id) {
            continue;
        }
        for wait in run.wait.into_iter().chain(run.cancel_on) {
            w_job.push(run.job_id);
            w_event.push(wait.event);
            w_path.push(wait.key.as_ref().map(|k| k.path.clone()));
            w_value.push(wait.key.map(|k| k.value));
            w_cond.push(wait.condition);
            w_step.push(match wait.kind {
                WaitKind::Step(id) => Some(id),
                WaitKind::Cancel => None,
            });
        }
        enqueue.extend(run.enqueue);
    }
    if !w_job.is_empty() {
        sql_query(
            "WITH w AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
                 $5::text[], $6::text[]) AS w(job_id, event, key_path, key_value, condition, step_id)), \
             paths AS (INSERT INTO infra_jobs_wait_paths (event, key_path) \
               SELECT DISTINCT event, key_path FROM w WHERE key_path IS NOT NULL \
               ON CONFLICT DO NOTHING) \
             INSERT INTO infra_jobs_waits (job_id, event, key_path, key_value, condition, step_id) \
             SELECT job_id, event, key_path, key_value, condition, step_id FROM w",
        )
        .bind::<Array<BigInt>, _>(&w_job)
        .bind::<Array<Text>, _>(&w_event)
        .bind::<Array<Nullable<Text>>, _>(&w_path)
        .bind::<Array<Nullable<Text>>, _>(&w_value)
        .bind::<Array<Nullable<Text>>, _>(&w_cond)
        .bind::<Array<Nullable<Text>>, _>(&w_step)
        .execute(conn)
        .await?;
    }
    if !enqueue.is_empty() {
        enqueue_on(conn, enqueue).await?;
    }
    Ok(held)
}

#[async_trait]
impl StepStore for PgQueue {
    async fn load_steps(&self, jobs: &[JobId]) -> Result<Vec<StoredStep>> {
        let mut conn = self.db.get().await?;
        let rows: Vec<StepRow> = sql_query(
            "SELECT job_id, step_id, state, until_ms, output::text AS output \
             FROM infra_jobs_steps WHERE job_id = ANY($1)",
        )
        .bind::<Array<BigInt>, _>(jobs)
        .load(&mut conn)
        .await
        .map_err(map_diesel_error)?;
        rows.into_iter()
            .map(|r| {
                let until_ms = r.until_ms.unwrap_or(0);
                let state = match r.state {
                    1 => StepState::Sleeping { until_ms },
                    2 => StepState::Waiting { until_ms },
                    _ => StepState::Done(decode_output(r.output.as_deref().unwrap_or("null"))?),
                };
                Ok(StoredStep {
                    job_id: r.job_id,
                    step_id: r.step_id,
                    state,
                })
            })
            .collect()
    }

    async fn save_steps(&self, worker: &str, steps: Vec<FinishedStep>) -> Result<Vec<bool>> {
        let jobs: Vec<i64> = steps.iter().map(|s| s.job_id).collect();
        let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
        let outputs: Vec<String> = steps.iter().map(|s| s.output.to_string()).collect();
        let mut held = self.settle_conn.lock(&self.db).await?;
        let result = sql_query(
            "WITH s AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) \
               AS s(job_id, step_id, output)), \
             held AS (SELECT j.id FROM infra_jobs j WHERE j.id = ANY($1) AND j.locked_by = $4 \
               AND NOT j.cancel_requested), \
             reset AS (UPDATE infra_jobs j SET attempts = 1, stepped = true FROM held h \
               WHERE j.id = h.id AND (j.attempts <> 1 OR NOT j.stepped)), \
             recorded AS (INSERT INTO infra_jobs_steps (job_id, step_id, state, output) \
               SELECT s.job_id, s.step_id, 0, s.output::jsonb FROM s JOIN held h ON h.id = s.job_id \
               ON CONFLICT (job_id, step_id) DO UPDATE SET state = 0, output = excluded.output, \
                 until_ms = NULL WHERE infra_jobs_steps.state <> 0) \
             SELECT id FROM held",
        )
        .bind::<Array<BigInt>, _>(&jobs)
        .bind::<Array<Text>, _>(&ids)
        .bind::<Array<Text>, _>(&outputs)
        .bind::<Text, _>(worker)
        .load::<IdRow>(held.conn())
        .await
        .map_err(map_diesel_error);
        let rows = held.keep_if_ok(result)?;
        Ok(held_flags(&jobs, &rows))
    }

    async fn park(&self, worker: &str, runs: Vec<ParkedRun>) -> Result<Vec<bool>> {
        let jobs: Vec<i64> = runs.iter().map(|r| r.job_id).collect();
        let untils: Vec<i64> = runs.iter().map(|r| r.until_ms).collect();
        let mut conn = self.db.get().await?;
        let worker = worker.to_owned();
        let alone = runs
            .iter()
            .all(|r| r.wait.is_none() && r.cancel_on.is_empty() && r.enqueue.is_empty());
        let held = if alone {
            // Sleeps alone: one statement, atomic without BEGIN/COMMIT round trips.
            park_on(&mut conn, &worker, runs).await
        } else {
            conn.transaction(async move |conn| park_on(conn, &worker, runs).await)
                .await
        }
        .map_err(map_diesel_error)?;
        self.wake_times.add(untils);
        Ok(held_flags(&jobs, &held))
    }

    async fn expire_wait(&self, job: JobId, step_id: &str) -> Result<Option<Value>> {
        let mut conn = self.db.get().await?;
        expire_wait_on(&mut conn, job, step_id).await
    }

    async fn deliver(
        &self,
        events: &[Event],
        check: Arc<dyn WaitCondition>,
    ) -> Result<Vec<Resumed>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.db.get().await?;
        deliver_on(&mut conn, events, check.as_ref()).await
    }

    async fn cancel_requested(&self, worker: &str, jobs: &[JobId]) -> Result<Vec<JobId>> {
        let mut conn = self.db.get().await?;
        let rows: Vec<IdRow> = sql_query(
            "SELECT id FROM infra_jobs WHERE id = ANY($1) AND locked_by = $2 AND cancel_requested",
        )
        .bind::<Array<BigInt>, _>(jobs)
        .bind::<Text, _>(worker)
        .load(&mut conn)
        .await
        .map_err(map_diesel_error)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }
}
