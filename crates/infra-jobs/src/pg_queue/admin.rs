//! Administration of the PostgreSQL queue ([`QueueAdmin`]): per-function counts, dead
//! letters, replay — each one statement on a pooled connection, never on the workers' held
//! connections.
//!
//! Invariants: a replay touches dead letters only (`dead_at IS NOT NULL`), keeps their ids,
//! and wakes the workers when it put something back; counts before this process migrated
//! treat a missing table as an empty queue, so a health check never creates tables.

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::RunQueryDsl;
use infra_core::{
    DeadLetter, Error, ErrorKind, FunctionQueueStats, JobFilter, JobId, QueueAdmin, Result,
};
use infra_db::{DbConnection, map_diesel_error};

use super::PgQueue;
use super::stored_event::decode_event;
use super::wake_channel::notify_statement;

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

#[derive(QueryableByName)]
struct DroppedRow {
    #[diesel(sql_type = Text)]
    function_id: String,
    #[diesel(sql_type = BigInt)]
    dropped: i64,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl PgQueue {
    /// Whether the queue's tables exist. Before this process migrated they may not, which
    /// administration reads as an empty queue rather than an error: a health check or an
    /// operator's tool must not create them.
    async fn tables_exist(&self, conn: &mut DbConnection) -> Result<bool> {
        if self.migrated.get().is_some() {
            return Ok(true);
        }
        let tables: CountRow = sql_query(
            "SELECT count(*) AS n FROM (SELECT to_regclass('infra_jobs') AS t) AS c \
             WHERE t IS NOT NULL",
        )
        .get_result(conn)
        .await
        .map_err(map_diesel_error)?;
        Ok(tables.n > 0)
    }
}

fn no_dead_letter(id: JobId) -> Error {
    Error::new(ErrorKind::NotFound, format!("no dead letter with id {id}"))
        .with_context("job", id.to_string())
}

#[async_trait]
impl QueueAdmin for PgQueue {
    async fn stats(&self) -> Result<Vec<FunctionQueueStats>> {
        let mut conn = self.db.get().await?;
        if !self.tables_exist(&mut conn).await? {
            return Ok(Vec::new());
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
        let dropped: Vec<DroppedRow> =
            sql_query("SELECT function_id, dropped FROM infra_jobs_rate_limited")
                .load(&mut conn)
                .await
                .map_err(map_diesel_error)?;
        let mut stats: Vec<FunctionQueueStats> = rows
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
            .collect();
        for d in dropped {
            match stats.iter_mut().find(|s| s.function_id == d.function_id) {
                Some(s) => s.rate_limited = d.dropped.max(0) as u64,
                None => {
                    let mut s = FunctionQueueStats::new(d.function_id);
                    s.rate_limited = d.dropped.max(0) as u64;
                    stats.push(s);
                }
            }
        }
        stats.sort_by(|a, b| a.function_id.cmp(&b.function_id));
        Ok(stats)
    }

    async fn dead_letters(&self, filter: &JobFilter, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut conn = self.db.get().await?;
        if !self.tables_exist(&mut conn).await? {
            return Ok(Vec::new());
        }
        let rows: Vec<DeadRow> = sql_query(
            "SELECT id, function_id, event::text AS event, attempts, last_error, dead_at \
             FROM infra_jobs WHERE dead_at IS NOT NULL AND ($1::text IS NULL OR function_id = $1) \
             ORDER BY dead_at DESC, id DESC LIMIT $2",
        )
        .bind::<Nullable<Text>, _>(filter.function_id.as_deref())
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
        if !self.tables_exist(&mut conn).await? {
            return Err(no_dead_letter(id));
        }
        let n = sql_query(
            "UPDATE infra_jobs SET dead_at = NULL, attempts = 0, last_error = NULL, \
             run_at = infra_jobs_now_ms() WHERE id = $1 AND dead_at IS NOT NULL",
        )
        .bind::<BigInt, _>(id)
        .execute(&mut conn)
        .await
        .map_err(map_diesel_error)?;
        if n == 0 {
            return Err(no_dead_letter(id));
        }
        // Its failed steps run again; the finished ones stay recorded.
        sql_query("DELETE FROM infra_jobs_steps WHERE job_id = $1 AND output ? 'error'")
            .bind::<BigInt, _>(id)
            .execute(&mut conn)
            .await
            .map_err(map_diesel_error)?;
        sql_query(notify_statement())
            .execute(&mut conn)
            .await
            .map_err(map_diesel_error)?;
        Ok(())
    }

    async fn replay_all(&self, filter: &JobFilter) -> Result<u64> {
        let mut conn = self.db.get().await?;
        if !self.tables_exist(&mut conn).await? {
            return Ok(0);
        }
        let replayed: CountRow = sql_query(
            "WITH replayed AS ( \
               UPDATE infra_jobs SET dead_at = NULL, attempts = 0, last_error = NULL, \
                 run_at = infra_jobs_now_ms() \
               WHERE dead_at IS NOT NULL AND ($1::text IS NULL OR function_id = $1) \
               RETURNING id, stepped), \
             failed_steps AS (DELETE FROM infra_jobs_steps \
               WHERE job_id = ANY(ARRAY(SELECT id FROM replayed WHERE stepped)) \
                 AND output ? 'error') \
             SELECT count(*) AS n FROM replayed",
        )
        .bind::<Nullable<Text>, _>(filter.function_id.as_deref())
        .get_result(&mut conn)
        .await
        .map_err(map_diesel_error)?;
        if replayed.n > 0 {
            sql_query(notify_statement())
                .execute(&mut conn)
                .await
                .map_err(map_diesel_error)?;
        }
        Ok(replayed.n.max(0) as u64)
    }
}
