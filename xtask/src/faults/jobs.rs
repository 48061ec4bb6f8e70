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
//!
//! Beside them run durable step functions (`STEP_RUNS` runs of `STEPS` steps each): every
//! execution of a step's closure is logged with the process it ran in. After the kill, the
//! steps each run had recorded are read from the queue; a step the rescuer runs again that was
//! recorded before the kill is a finished step re-run (must be 0: only the step in flight may
//! run twice), and a run whose last step never ran is lost (must be 0).

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
/// The kill comes once this many effects are recorded (half way), or once half the durable
/// steps ran, whichever is first, so both kinds of work are in flight.
const KILL_AFTER: i64 = JOBS / 2;
const KILL_AFTER_STEPS: i64 = STEP_RUNS * STEPS / 2;
/// Simulated work per job, so the run lasts long enough to be killed in the middle.
const WORK: Duration = Duration::from_millis(5);
const EVENT: &str = "faults/effect";
/// Durable step runs in the scenario, and their steps.
const STEP_RUNS: i64 = 300;
const STEPS: i64 = 3;
/// Work per step, and the slots step runs may take (the rest run the effect jobs alongside),
/// so step runs are in flight when the kill comes.
const STEP_WORK: Duration = Duration::from_millis(20);
const STEP_SLOTS: u32 = 4;
const STEP_EVENT: &str = "faults/steps";

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
        let db = Database::from_config(DbConfig::new(url)?)?;
        let jobs = jobs_runtime(&db, "first")?;
        jobs.start().await?;
        // Until SIGKILL: the scenario never lets it stop by itself.
        tokio::time::sleep(Duration::from_secs(600)).await;
        jobs.shutdown().await;
        Ok(true)
    })
}

/// A runtime on the scenario's queue with its functions registered, not started; `phase`
/// names the process in the step log.
fn jobs_runtime(db: &Database, phase: &'static str) -> Result<JobsRuntime> {
    let jobs = JobsRuntime::with_settings(
        Arc::new(PgQueue::new(db.clone())),
        Default::default(),
        WorkerSettings::default()
            .with_concurrency(CONCURRENCY)
            .with_lease(LEASE)
            .with_poll_interval(Duration::from_millis(100)),
    );
    jobs.register(effect_function(db)?)?;
    jobs.register(steps_function(db, phase)?)?;
    Ok(jobs)
}

/// [`STEPS`] durable steps, each logging every execution of its closure in `step_log`
/// (key, step number, phase) before it returns.
fn steps_function(db: &Database, phase: &'static str) -> Result<Function> {
    Ok(Function::builder("record-steps")
        .on_event(STEP_EVENT)
        .concurrency(STEP_SLOTS)
        .with_state((db.clone(), phase))
        .raw_handler(
            |event: Event, ctx: JobContext<(Database, &'static str)>| async move {
                let (db, phase) = ctx.state().clone();
                let key = event.data["key"].as_str().unwrap_or_default().to_owned();
                for n in 1..=STEPS {
                    let (db, key) = (db.clone(), key.clone());
                    let _: i64 = ctx
                        .step()
                        .run(&format!("step-{n}"), || async move {
                            tokio::time::sleep(STEP_WORK).await;
                            let mut conn = db.get().await?;
                            diesel::sql_query(
                                "INSERT INTO step_log (key, step, phase) VALUES ($1, $2, $3)",
                            )
                            .bind::<Text, _>(&key)
                            .bind::<BigInt, _>(n)
                            .bind::<Text, _>(phase)
                            .execute(&mut conn)
                            .await
                            .map_err(infra::db::map_diesel_error)?;
                            Ok::<_, infra::Error>(n)
                        })
                        .await?;
                }
                Ok::<_, infra::Error>(())
            },
        )?)
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
    let db = Database::from_config(DbConfig::new(url)?)?;
    // Enqueue everything with a stopped runtime: every job waits in PostgreSQL.
    let acknowledged = runtime.block_on(async {
        let sender = jobs_runtime(&db, "sender")?;
        sender.prepare().await?;
        db.get()
            .await?
            .batch_execute(
                "CREATE TABLE runs (key text NOT NULL);
                 CREATE TABLE effects (key text NOT NULL);
                 CREATE INDEX effects_key ON effects (key);
                 CREATE TABLE step_log (key text NOT NULL, step bigint NOT NULL, phase text NOT NULL);",
            )
            .await?;
        let step_events = (0..STEP_RUNS)
            .map(|i| Event::new(STEP_EVENT, json!({ "key": format!("s{i}") })))
            .collect();
        sender.send_many(step_events).await?;
        for round in 0..2 {
            for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
                let events = chunk
                    .iter()
                    .map(|i| Event::new(EVENT, json!({ "key": format!("k{i}"), "round": round })))
                    .collect();
                sender.send_many(events).await?;
            }
        }
        count(
            &db,
            "SELECT count(*) AS n FROM infra_jobs WHERE function_id <> 'record-steps'",
        )
        .await
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
        let steps = runtime.block_on(count(&db, "SELECT count(*) AS n FROM step_log"));
        match (done, steps) {
            (Ok(n), _) if n >= KILL_AFTER => break n,
            (Ok(n), Ok(s)) if s >= KILL_AFTER_STEPS && n > 0 => break n,
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
                "CREATE TABLE held AS SELECT id FROM infra_jobs WHERE locked_by IS NOT NULL;
                 CREATE TABLE recorded AS SELECT j.event->'data'->>'key' AS key, count(*) AS steps
                   FROM infra_jobs_steps s JOIN infra_jobs j ON j.id = s.job_id
                   WHERE s.state = 0 AND j.function_id = 'record-steps' GROUP BY 1;",
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
        let rescuer = jobs_runtime(&db, "rescue")?;
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
            .dead_letters(&infra::core::JobFilter::all(), 100)
            .await
            .map(|d| d.len());
        rescuer.shutdown().await;
        let recovery = outcome?;
        anyhow::Ok((recovery, backlog_done.unwrap_or(recovery), dead?))
    })?;

    let (steps_rerun, steps_lost, steps_in_flight, recorded_steps, steps_before) = runtime
        .block_on(async {
            // A step the rescuer ran that the queue had recorded before the kill.
            let rerun = count(
                &db,
                "SELECT count(*) AS n FROM step_log l JOIN recorded r ON r.key = l.key \
             WHERE l.phase = 'rescue' AND l.step <= r.steps",
            )
            .await?;
            let lost = count(
                &db,
                &format!(
                    "SELECT count(*) AS n FROM generate_series(0, {}) i \
                 WHERE NOT EXISTS (SELECT 1 FROM step_log WHERE key = 's' || i AND step = {STEPS})",
                    STEP_RUNS - 1
                ),
            )
            .await?;
            // Steps logged by both processes: the ones in flight at the kill, run again.
            let in_flight = count(
                &db,
                "SELECT count(*) AS n FROM (SELECT key, step FROM step_log GROUP BY key, step \
             HAVING count(DISTINCT phase) > 1) d",
            )
            .await?;
            let recorded = count(
                &db,
                "SELECT coalesce(sum(steps), 0)::bigint AS n FROM recorded",
            )
            .await?;
            let before = count(
                &db,
                "SELECT count(*) AS n FROM step_log WHERE phase = 'first'",
            )
            .await?;
            anyhow::Ok((rerun, lost, in_flight, recorded, before))
        })?;
    println!(
        "   step runs: {steps_before} step executions before the kill, {recorded_steps} steps of \
         unfinished runs recorded at the kill; {steps_rerun} finished steps re-run, \
         {steps_in_flight} steps in flight run again, {steps_lost} of {STEP_RUNS} runs lost"
    );
    if steps_rerun > 0 {
        bail!("{steps_rerun} finished steps ran again after the kill (they must not)");
    }

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
             idempotency key), and {STEP_RUNS} durable runs of {STEPS} steps, {CONCURRENCY} at a \
             time; another worker takes over"
        ),
        lost: (lost + steps_lost) as u64,
        acknowledged: (acknowledged + STEP_RUNS) as u64,
        failed_calls: dead_letters as u64,
        recovery,
        note: format!(
            "recovery = SIGKILL to every job done. The {leased} jobs the dead worker held wait \
             out its {} s lease (INFRA_JOBS_LEASE, default 30 s), so the lease bounds recovery \
             from below{}; the other {} were done {} ms after the kill. {twice} effects recorded \
             twice; {repeated} jobs ran again (at-least-once delivery, absorbed by the \
             handler's key guard). Durable steps: {recorded_steps} recorded at the kill, \
             {steps_rerun} of them run again, {steps_in_flight} in flight run again, {steps_lost} \
             step runs lost. Failed calls = dead letters",
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
