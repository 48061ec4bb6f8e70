//! Concurrency limits across worker processes sharing one PostgreSQL queue.
//!
//! The workers are child processes (this test binary, running `child_worker`). Their
//! handlers record a `+1` when they start and a `-1` when they end into a table whose
//! sequence orders the records as they happened; a running sum over that order is how many
//! handlers ran at once, across every process, so the tests assert on what the handlers
//! measured rather than on what the queue says.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use infra_core::{Event, EventSender};
use infra_db::{Database, DbConfig};
use infra_jobs::{Function, JobContext, JobsRuntime, PgQueue, WorkerSettings};
use serde_json::json;

const CHILD_ENV: &str = "INFRA_JOBS_TEST_CONCURRENCY_DB";

/// At most this many runs of `global-limit` at once, over all processes.
const GLOBAL_LIMIT: u32 = 3;
/// At most this many runs of `per-user` at once per `event.data.user`.
const PER_USER_LIMIT: u32 = 2;
/// At most this many runs of `held` at once (the SIGKILL test).
const HELD_LIMIT: u32 = 2;
/// Jobs each process may run at once: well above every limit, so only the limits hold
/// the processes back.
const PROCESS_CONCURRENCY: usize = 6;

#[derive(diesel::QueryableByName)]
struct Peak {
    #[diesel(sql_type = Nullable<Text>)]
    key: Option<String>,
    #[diesel(sql_type = BigInt)]
    peak: i64,
}

/// The most runs of `function` at once, per key (or over all keys with `per_key` false),
/// from the handlers' records; runs that never recorded their end count until `until_seq`
/// (the moment their process was killed).
async fn peaks(db: &Database, function: &str, per_key: bool, until_seq: i64) -> Vec<Peak> {
    let mut conn = db.get().await.unwrap();
    let partition = if per_key { "key" } else { "NULL::text" };
    diesel::sql_query(format!(
        "WITH ends AS ( \
           SELECT seq, function_id, key, delta FROM runs WHERE function_id = $1 \
           UNION ALL \
           SELECT $2, s.function_id, s.key, -1 FROM runs s \
           WHERE s.function_id = $1 AND s.delta = 1 \
             AND NOT EXISTS (SELECT 1 FROM runs e WHERE e.run = s.run AND e.delta = -1)) \
         SELECT {partition} AS key, max(running)::bigint AS peak FROM ( \
           SELECT key, sum(delta) OVER (PARTITION BY {partition} ORDER BY seq) AS running \
           FROM ends) r \
         GROUP BY 1 ORDER BY 1"
    ))
    .bind::<Text, _>(function)
    .bind::<BigInt, _>(until_seq)
    .load(&mut conn)
    .await
    .unwrap()
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

async fn record(
    db: &Database,
    run: &str,
    function: &str,
    key: Option<&str>,
    job: &str,
    delta: i32,
) -> infra_core::Result<()> {
    let mut conn = db.get().await?;
    diesel::sql_query(
        "INSERT INTO runs (pid, run, function_id, key, job, delta) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind::<Integer, _>(std::process::id() as i32)
    .bind::<Text, _>(run)
    .bind::<Text, _>(function)
    .bind::<Nullable<Text>, _>(key)
    .bind::<Text, _>(job)
    .bind::<Integer, _>(delta)
    .execute(&mut conn)
    .await
    .map_err(infra_db::map_diesel_error)?;
    Ok(())
}

/// The functions every worker process registers, recording into `db`.
fn functions(db: &Database) -> Vec<Function> {
    vec![
        Function::builder("global-limit")
            .on_event("t/global-limit")
            .concurrency(GLOBAL_LIMIT)
            .with_state(db.clone())
            .raw_handler(handler)
            .unwrap(),
        Function::builder("per-user")
            .on_event("t/per-user")
            .concurrency_per_key(PER_USER_LIMIT, "event.data.user")
            .with_state(db.clone())
            .raw_handler(handler)
            .unwrap(),
        Function::builder("held")
            .on_event("t/held")
            .concurrency(HELD_LIMIT)
            .with_state(db.clone())
            .raw_handler(handler)
            .unwrap(),
    ]
}

/// Records the start and end of one run, sleeping `event.data.ms` in between (on the first
/// attempt `event.data.first_ms` when given: long enough to be killed mid-run).
async fn handler(event: Event, ctx: JobContext<Database>) -> infra_core::Result<()> {
    let db = ctx.state().clone();
    let run = format!("{:016x}", rand_u64());
    let key = event.data["user"].as_str().map(str::to_owned);
    let job = event.data["n"].as_i64().unwrap_or_default().to_string();
    let ms = match event.data["first_ms"].as_u64() {
        Some(first) if ctx.attempt() == 1 => first,
        _ => event.data["ms"].as_u64().unwrap_or(10),
    };
    record(&db, &run, ctx.function_id(), key.as_deref(), &job, 1).await?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    record(&db, &run, ctx.function_id(), key.as_deref(), &job, -1).await?;
    Ok(())
}

/// A pool that waits for connections as long as a loaded machine needs.
fn patient_database(url: &str) -> Database {
    let mut config = DbConfig::new(url).unwrap();
    config.connect_timeout = Duration::from_secs(60);
    config.acquire_timeout = Duration::from_secs(60);
    Database::from_config(config).unwrap()
}

fn runtime(db: &Database) -> JobsRuntime {
    let rt = JobsRuntime::with_settings(
        Arc::new(PgQueue::new(db.clone())),
        Default::default(),
        WorkerSettings::default()
            .with_concurrency(PROCESS_CONCURRENCY)
            // Well above a heartbeat's hiccups on a loaded machine: a worker that loses its
            // lease while its handler runs is the one case the limit cannot cover.
            .with_lease(Duration::from_secs(10))
            .with_poll_interval(Duration::from_millis(100)),
    );
    for f in functions(db) {
        rt.register(f).unwrap();
    }
    rt
}

/// Not a test on its own: the worker process the tests below start (and kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only as a child process of the tests in this file"]
async fn child_worker() {
    let url = std::env::var(CHILD_ENV).expect("started by a parent test");
    let db = patient_database(&url);
    let rt = runtime(&db);
    rt.start().await.unwrap();
    let mut conn = db.get().await.unwrap();
    diesel::sql_query("INSERT INTO ready (pid) VALUES ($1)")
        .bind::<Integer, _>(std::process::id() as i32)
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Worker processes, killed (SIGKILL) when dropped so a failed assertion leaves none behind.
struct Workers {
    url: String,
    children: Vec<Child>,
}

impl Workers {
    fn new(url: &str) -> Self {
        Workers {
            url: url.to_owned(),
            children: Vec::new(),
        }
    }

    /// Starts one more worker process and returns its pid.
    fn spawn(&mut self) -> u32 {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_worker", "--nocapture"])
            .env(CHILD_ENV, &self.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.push(child);
        pid
    }

    fn kill(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut child = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A migrated queue database with the handlers' tables.
async fn setup(name: &str) -> (support::TestDb, Database, JobsRuntime) {
    let test_db = support::TestDb::create(name).await;
    let db = patient_database(&test_db.url);
    let sender = runtime(&db);
    sender.prepare().await.unwrap();
    db.get()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE runs (seq bigserial PRIMARY KEY, pid integer NOT NULL, run text NOT NULL, \
               function_id text NOT NULL, key text, job text NOT NULL, delta integer NOT NULL); \
             CREATE TABLE ready (pid integer PRIMARY KEY)",
        )
        .await
        .unwrap();
    (test_db, db, sender)
}

async fn wait_until(db: &Database, what: &str, sql: &str, want: i64) {
    // A deadline on progress only, far beyond what the work takes: never a timing assertion.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while support::count(db, sql).await != want {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn now_seq(db: &Database) -> i64 {
    support::count(db, "SELECT nextval('runs_seq_seq') AS n").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_worker_processes() {
    let (test_db, db, sender) = setup("limits").await;
    let mut workers = Workers::new(&test_db.url);
    for _ in 0..3 {
        workers.spawn();
    }
    wait_until(
        &db,
        "three workers ready",
        "SELECT count(*) AS n FROM ready",
        3,
    )
    .await;

    let mut events = Vec::new();
    for n in 0..60 {
        events.push(Event::new(
            "t/global-limit",
            json!({ "n": n, "ms": 10 + (n * 7) % 30 }),
        ));
        events.push(Event::new(
            "t/per-user",
            json!({ "n": n, "user": format!("u{}", n % 4), "ms": 10 + (n * 11) % 30 }),
        ));
    }
    sender.send_many(events).await.unwrap();
    wait_until(
        &db,
        "every job done",
        "SELECT count(*) AS n FROM infra_jobs",
        0,
    )
    .await;
    let end = now_seq(&db).await;
    drop(workers);

    for function in ["global-limit", "per-user"] {
        let done = support::count(
            &db,
            &format!(
                "SELECT count(DISTINCT job) AS n FROM runs WHERE function_id = '{function}' AND delta = -1"
            ),
        )
        .await;
        assert_eq!(done, 60, "every job of {function} ran to its end");
    }
    let global = peaks(&db, "global-limit", false, end).await;
    assert_eq!(global.len(), 1);
    assert!(
        global[0].peak <= i64::from(GLOBAL_LIMIT),
        "global limit {GLOBAL_LIMIT} exceeded: {} at once",
        global[0].peak
    );
    let per_user = peaks(&db, "per-user", true, end).await;
    assert_eq!(per_user.len(), 4, "four users");
    for p in &per_user {
        assert!(
            p.peak <= i64::from(PER_USER_LIMIT),
            "per-user limit {PER_USER_LIMIT} exceeded for {:?}: {} at once",
            p.key,
            p.peak
        );
    }
    let processes = support::count(&db, "SELECT count(DISTINCT pid) AS n FROM runs").await;
    eprintln!(
        "global peak {} (limit {GLOBAL_LIMIT}), per-user peaks {:?} (limit {PER_USER_LIMIT}), \
         runs spread over {processes} processes",
        global[0].peak,
        per_user.iter().map(|p| p.peak).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_slots_free_after_its_lease_and_the_limit_holds() {
    let (test_db, db, sender) = setup("killed_slots").await;
    let mut workers = Workers::new(&test_db.url);
    let first = workers.spawn();
    wait_until(
        &db,
        "the first worker ready",
        "SELECT count(*) AS n FROM ready",
        1,
    )
    .await;

    // The first two jobs run for two minutes on their first attempt: the first worker holds
    // both slots until it is killed. The rest are short.
    let mut events = Vec::new();
    for n in 0..12 {
        let data = if n < 2 {
            json!({ "n": n, "first_ms": 120_000, "ms": 20 })
        } else {
            json!({ "n": n, "ms": 20 })
        };
        events.push(Event::new("t/held", data));
    }
    sender.send_many(events).await.unwrap();
    let holding = format!(
        "SELECT count(*) AS n FROM runs s WHERE s.pid = {first} AND s.delta = 1 \
         AND NOT EXISTS (SELECT 1 FROM runs e WHERE e.run = s.run AND e.delta = -1)"
    );
    wait_until(&db, "the first worker holding both slots", &holding, 2).await;

    // Two more workers, ready while the slots are held: they must not start anything.
    workers.spawn();
    workers.spawn();
    wait_until(
        &db,
        "two more workers ready",
        "SELECT count(*) AS n FROM ready",
        3,
    )
    .await;
    assert_eq!(
        support::count(&db, &holding).await,
        2,
        "still running at the kill"
    );
    let leased = format!(
        "SELECT count(*) AS n FROM infra_jobs \
         WHERE locked_by LIKE '%-{first}-%' AND locked_until > infra_jobs_now_ms()"
    );
    assert_eq!(
        support::count(&db, &leased).await,
        2,
        "still leased at the kill"
    );
    workers.kill(first); // SIGKILL: no settlement, no cleanup, leases left behind
    let killed_at = now_seq(&db).await;

    wait_until(
        &db,
        "every job done",
        "SELECT count(*) AS n FROM infra_jobs",
        0,
    )
    .await;
    drop(workers);

    // The killed worker's unfinished runs count as running up to the kill: nothing else
    // may have started while its leases lived.
    let held = peaks(&db, "held", false, killed_at).await;
    assert!(
        held[0].peak <= i64::from(HELD_LIMIT),
        "limit {HELD_LIMIT} exceeded: {} at once",
        held[0].peak
    );
    let done = support::count(
        &db,
        "SELECT count(DISTINCT job) AS n FROM runs WHERE function_id = 'held' AND delta = -1",
    )
    .await;
    assert_eq!(
        done, 12,
        "every job ran to its end, the killed ones elsewhere"
    );
    let after_kill = support::count(
        &db,
        &format!("SELECT count(*) AS n FROM runs WHERE delta = 1 AND seq > {killed_at}"),
    )
    .await;
    assert!(
        after_kill >= 12,
        "the other workers ran the ten waiting jobs and the two killed ones after the kill"
    );
}

/// The queue on its own, one process, several worker ids: what a claim admits, and when a
/// slot comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_admits_up_to_the_limit_and_frees_slots_on_settle_and_expiry() {
    use infra_core::{ConcurrencySlot, JobQueue, NewJob, Settlement};

    let test_db = support::TestDb::create("slots").await;
    let queue = PgQueue::new(test_db.database());
    queue.prepare().await.unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let limited = |n: i64| {
        NewJob::new("f", Event::new("t/f", json!({ "n": n })), now())
            .with_priority(1)
            .with_concurrency_slot(ConcurrencySlot::new("s", 2))
    };
    let mut jobs: Vec<NewJob> = (0..5).map(limited).collect();
    // Behind the limited ones in claim order: never held up by their full scope.
    jobs.push(NewJob::new("g", Event::new("t/g", json!({})), now()));
    queue.enqueue(jobs).await.unwrap();

    let long = Duration::from_secs(60);
    let a = queue.claim("a", 10, long).await.unwrap();
    let ids = |jobs: &[infra_core::ClaimedJob], f: &str| -> Vec<i64> {
        jobs.iter()
            .filter(|j| j.function_id == f)
            .map(|j| j.id)
            .collect()
    };
    assert_eq!(ids(&a, "f").len(), 2, "two of scope s, the limit");
    assert_eq!(ids(&a, "g").len(), 1, "the unlimited job too");
    assert!(
        queue.claim("b", 10, long).await.unwrap().is_empty(),
        "the scope is full for every worker"
    );

    // A settlement frees its slot, for one more.
    queue
        .settle("a", vec![(ids(&a, "f")[0], Settlement::Completed)])
        .await
        .unwrap();
    let b = queue.claim("b", 10, long).await.unwrap();
    assert_eq!(b.len(), 1);

    // An expired lease frees its slot without its worker: claimed with a lease already
    // over, "c"'s job counts as running no more, and "c" cannot revive it.
    queue
        .settle("b", vec![(b[0].id, Settlement::Completed)])
        .await
        .unwrap();
    let c = queue.claim("c", 10, Duration::ZERO).await.unwrap();
    assert_eq!(c.len(), 1);
    let d = queue.claim("d", 10, long).await.unwrap();
    assert_eq!(d.len(), 1, "c's expired slot went to d");
    queue.heartbeat("c", &[c[0].id], long).await.unwrap();
    assert!(
        queue.claim("e", 10, long).await.unwrap().is_empty(),
        "a's and d's jobs hold the two slots"
    );
}
