//! The `jobs` fault scenario: a `PgQueue` worker process SIGKILLed in the middle of a few
//! thousand jobs, and another worker finishing them.
//!
//! The worker is this xtask binary itself, started as `xtask faults-jobs-worker <url>` (a
//! hidden task), so the scenario needs no other build. Delivery is at least once: the jobs the
//! dead worker had claimed run again once their lease expires, so the handler makes its effect
//! idempotent by the job's idempotency key, as `docs/jobs.md` asks of every handler. The
//! scenario counts what that leaves: jobs without their effect (lost), keys whose effect was
//! recorded twice, and runs repeated after the kill (what a handler without the guard would
//! have done twice).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use infra::db::diesel::sql_types::{BigInt, Text};
use infra::db::diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use infra::db::{Database, DbConfig, diesel};
use infra::jobs::{Function, JobContext, JobsRuntime, PgQueue, WorkerSettings};
use infra::{Event, EventSender};
use serde_json::json;

use super::{FaultReport, TempDatabase};

/// Jobs in the run, each sent twice (the idempotency key keeps one).
const JOBS: i64 = 3_000;
/// How long a claimed job stays with its worker; a dead worker's jobs wait this out.
const LEASE: Duration = Duration::from_secs(5);
/// Jobs each worker runs at once.
const CONCURRENCY: usize = 8;
/// The kill comes once this many effects are recorded: half way.
const KILL_AFTER: i64 = JOBS / 2;
/// Simulated work per job, so the run lasts long enough to be killed in the middle.
const WORK: Duration = Duration::from_millis(5);
const EVENT: &str = "faults/effect";

/// The hidden task `faults-jobs-worker <database-url>`: a worker process that runs the
/// scenario's function until it is killed.
pub fn worker(args: &[String]) -> Result<bool> {
    let [url] = args else {
        bail!("usage: xtask faults-jobs-worker <database-url> (started by `faults jobs`)");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = Database::new(DbConfig::new(url)?)?;
        let jobs = jobs_runtime(&db)?;
        jobs.start().await?;
        // Until SIGKILL: the scenario never lets it stop by itself.
        tokio::time::sleep(Duration::from_secs(600)).await;
        jobs.shutdown().await;
        Ok(true)
    })
}

/// A runtime on the scenario's queue with its function registered, not started.
fn jobs_runtime(db: &Database) -> Result<JobsRuntime> {
    let jobs = JobsRuntime::with_settings(
        Arc::new(PgQueue::new(db.clone())),
        Default::default(),
        WorkerSettings::default()
            .with_concurrency(CONCURRENCY)
            .with_lease(LEASE)
            .with_poll_interval(Duration::from_millis(100)),
    );
    jobs.register(effect_function(db)?)?;
    Ok(jobs)
}

/// In one transaction under an advisory lock on the key: records the run in `runs`, and the
/// effect in `effects` only if the key has none yet. `effects` has no unique constraint, so a
/// second effect for a key would show in the count; `runs` shows every run that committed,
/// i.e. what a handler without the guard would have recorded.
fn effect_function(db: &Database) -> Result<Function> {
    Ok(Function::builder("record-effect")
        .on_event(EVENT)
        .idempotency(["event.data.key"], Duration::from_secs(3600))
        .with_state(db.clone())
        .raw_handler(|event: Event, ctx: JobContext<Database>| async move {
            let db = ctx.state().clone();
            let key = event.data["key"].as_str().unwrap_or_default().to_owned();
            tokio::time::sleep(WORK).await;
            let mut conn = db.get().await?;
            conn.transaction(async |conn| {
                // The key's lock first (the statement's own snapshot precedes it), then the
                // effect, seen by a fresh snapshot of the next statement.
                diesel::sql_query(
                    "INSERT INTO runs (key) \
                     SELECT $1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked",
                )
                .bind::<Text, _>(&key)
                .execute(conn)
                .await?;
                diesel::sql_query(
                    "INSERT INTO effects (key) SELECT $1 \
                     WHERE NOT EXISTS (SELECT 1 FROM effects WHERE key = $1)",
                )
                .bind::<Text, _>(&key)
                .execute(conn)
                .await
            })
            .await
            .map_err(infra::db::map_diesel_error)?;
            Ok::<_, infra::Error>(())
        })?)
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(db: &Database, sql: &str) -> Result<i64> {
    let mut conn = db.get().await?;
    let row: Count = diesel::sql_query(sql).get_result(&mut conn).await?;
    Ok(row.n)
}

/// The scenario: see the module's documentation.
pub fn worker_killed_mid_run(runtime: &tokio::runtime::Runtime) -> Result<FaultReport> {
    let database = TempDatabase::create(runtime, "jobs")?;
    let outcome = run(runtime, &database.url);
    database.drop(runtime);
    outcome
}

fn run(runtime: &tokio::runtime::Runtime, url: &str) -> Result<FaultReport> {
    let db = Database::new(DbConfig::new(url)?)?;
    // Enqueue everything with a stopped runtime: every job waits in PostgreSQL.
    let acknowledged = runtime.block_on(async {
        let sender = jobs_runtime(&db)?;
        sender.prepare().await?;
        db.get()
            .await?
            .batch_execute(
                "CREATE TABLE runs (key text NOT NULL);
                 CREATE TABLE effects (key text NOT NULL);
                 CREATE INDEX effects_key ON effects (key);",
            )
            .await?;
        for round in 0..2 {
            for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
                let events = chunk
                    .iter()
                    .map(|i| Event::new(EVENT, json!({ "key": format!("k{i}"), "round": round })))
                    .collect();
                sender.send_many(events).await?;
            }
        }
        count(&db, "SELECT count(*) AS n FROM infra_jobs").await
    })?;
    if acknowledged != JOBS {
        bail!("{} sends made {acknowledged} jobs, not {JOBS}", 2 * JOBS);
    }

    let exe = std::env::current_exe().context("the path of this xtask binary")?;
    let mut child = Command::new(exe)
        .args(["faults-jobs-worker", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the worker process")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let worked = loop {
        let done = runtime.block_on(count(&db, "SELECT count(*) AS n FROM effects"));
        match done {
            Ok(n) if n >= KILL_AFTER => break n,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the worker process recorded no {KILL_AFTER} effects in 120 s");
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    child.kill().context("SIGKILL the worker")?; // no cleanup: its leases stay behind
    let killed = Instant::now();
    child.wait()?;

    let (left, leased) = runtime.block_on(async {
        // The jobs the dead worker holds, to tell their recovery from the backlog's.
        db.get()
            .await?
            .batch_execute(
                "CREATE TABLE held AS SELECT id FROM infra_jobs WHERE locked_by IS NOT NULL",
            )
            .await?;
        let left = count(&db, "SELECT count(*) AS n FROM infra_jobs").await?;
        let leased = count(&db, "SELECT count(*) AS n FROM held").await?;
        anyhow::Ok((left, leased))
    })?;
    if left == 0 {
        bail!("the worker finished every job before the kill; nothing was tested");
    }

    // Another worker (in this process) takes over; done when the queue is empty.
    let (recovery, backlog_done, dead_letters) = runtime.block_on(async {
        let rescuer = jobs_runtime(&db)?;
        rescuer.start().await?;
        let deadline = Instant::now() + LEASE + Duration::from_secs(120);
        let mut backlog_done = None;
        let outcome = loop {
            if backlog_done.is_none() {
                let backlog = count(
                    &db,
                    "SELECT count(*) AS n FROM infra_jobs WHERE id NOT IN (SELECT id FROM held)",
                )
                .await;
                if let Ok(0) = backlog {
                    backlog_done = Some(killed.elapsed());
                }
            }
            match count(&db, "SELECT count(*) AS n FROM infra_jobs").await {
                Ok(0) => break Ok(killed.elapsed()),
                _ if Instant::now() > deadline => {
                    break Err(anyhow::anyhow!(
                        "jobs still queued {} s after the kill",
                        killed.elapsed().as_secs()
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let admin = rescuer.admin().context("a PgQueue runtime has an admin")?;
        let dead = admin
            .dead_letters(&infra::JobFilter::all(), 100)
            .await
            .map(|d| d.len());
        rescuer.shutdown().await;
        let recovery = outcome?;
        anyhow::Ok((recovery, backlog_done.unwrap_or(recovery), dead?))
    })?;

    let (lost, twice, repeated) = runtime.block_on(async {
        let lost = count(
            &db,
            &format!(
                "SELECT count(*) AS n FROM generate_series(0, {}) i \
                 WHERE NOT EXISTS (SELECT 1 FROM effects WHERE key = 'k' || i)",
                JOBS - 1
            ),
        )
        .await?;
        let twice = count(
            &db,
            "SELECT count(*) AS n FROM (SELECT key FROM effects GROUP BY key HAVING count(*) > 1) d",
        )
        .await?;
        let repeated = count(
            &db,
            "SELECT count(*) AS n FROM (SELECT key FROM runs GROUP BY key HAVING count(*) > 1) d",
        )
        .await?;
        anyhow::Ok((lost, twice, repeated))
    })?;
    println!(
        "   killed after {worked} effects with {left} jobs queued, {leased} leased by the dead \
         worker; {twice} effects recorded twice, {repeated} jobs ran again, {dead_letters} dead \
         letters"
    );
    if twice > 0 {
        bail!("{twice} keys had their effect recorded twice (the guard must hold it to one)");
    }
    Ok(FaultReport {
        scenario: "jobs",
        fault: format!(
            "PgQueue worker process SIGKILLed after {worked} of {JOBS} jobs (each sent twice, \
             idempotency key), {CONCURRENCY} at a time; another worker takes over"
        ),
        lost: lost as u64,
        acknowledged: acknowledged as u64,
        failed_calls: dead_letters as u64,
        recovery,
        note: format!(
            "recovery = SIGKILL to every job done. The {leased} jobs the dead worker held wait \
             out its {} s lease (INFRA_JOBS_LEASE, default 30 s), so the lease bounds recovery \
             from below{}; the other {} were done {} ms after the kill. {twice} effects recorded \
             twice; {repeated} jobs ran again (at-least-once delivery, absorbed by the \
             handler's key guard). Failed calls = dead letters",
            LEASE.as_secs(),
            if backlog_done + Duration::from_millis(500) < recovery {
                " and dominated it here"
            } else {
                " (the backlog's drain took as long here)"
            },
            left - leased,
            backlog_done.as_millis(),
        ),
        section: None,
    })
}
