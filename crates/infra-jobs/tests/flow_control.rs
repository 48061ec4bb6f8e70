//! Flow control across two worker processes on one PostgreSQL queue: this test's runtime and
//! a child process (this binary again) both run every function, and every run logs itself in
//! a table; each option is checked with its key (two keys each, which must not interfere).
//!
//! Throttle: runs of a key never start before their turn. Rate limit: three runs per key, the
//! rest dropped and counted. Batches: at most five events per run, one key per run, every
//! event in one run. Singleton: one run per key (skip); a new run cancels the running one,
//! whose step sees its token cancelled (cancel). Debounce with a maximum wait: a run before the
//! stream of events ends, and the last event runs. Ordering: runs of a key start in send order,
//! each after the previous one finished. `cancel_on`: a matching event cancels a sleeping run.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use infra_core::{Error, Event, EventSender, SingletonMode};
use infra_db::{Database, DbConfig};
use infra_jobs::{Function, JobContext, JobsRuntime, Match, PgQueue, WorkerSettings};
use serde_json::json;

const CHILD_ENV: &str = "INFRA_JOBS_FLOW_CHILD_DB";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Logs a run: (function, key, n, events, started, finished, cancelled).
async fn log(
    db: &Database,
    function: &str,
    event: &Event,
    events: usize,
    started: i64,
    cancelled: bool,
) {
    let mut conn = db.get().await.unwrap();
    diesel::sql_query(
        "INSERT INTO flow_log (function, key, n, events, started_ms, finished_ms, cancelled) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind::<Text, _>(function)
    .bind::<Text, _>(event.data["k"].as_str().unwrap_or_default())
    .bind::<Integer, _>(event.data["n"].as_i64().unwrap_or(0) as i32)
    .bind::<Integer, _>(events as i32)
    .bind::<BigInt, _>(started)
    .bind::<BigInt, _>(now_ms())
    .bind::<Bool, _>(cancelled)
    .execute(&mut conn)
    .await
    .unwrap();
}

type Ctx = JobContext<Database>;

fn functions(db: &Database) -> Vec<Function> {
    let plain =
        |id: &str, event: &str| Function::builder(id).on_event(event).with_state(db.clone());
    vec![
        plain("throttled", "t/throttle")
            .throttle(2, Duration::from_secs(1), Some("event.data.k"))
            .raw_handler(|event: Event, ctx: Ctx| async move {
                log(ctx.state(), "throttled", &event, 1, now_ms(), false).await;
            })
            .unwrap(),
        plain("rate-limited", "t/rate")
            .rate_limit(3, Duration::from_secs(60), Some("event.data.k"))
            .raw_handler(|event: Event, ctx: Ctx| async move {
                log(ctx.state(), "rate-limited", &event, 1, now_ms(), false).await;
            })
            .unwrap(),
        plain("batched", "t/batch")
            .batch_events(5, Duration::from_secs(2), Some("event.data.k"))
            .raw_handler(|event: Event, ctx: Ctx| async move {
                let keys: Vec<&str> = ctx
                    .events()
                    .iter()
                    .map(|e| e.data["k"].as_str().unwrap_or(""))
                    .collect();
                let one_key = keys.iter().all(|k| *k == keys[0]);
                let mut mixed = event.clone();
                if !one_key {
                    mixed.data["k"] = json!("MIXED");
                }
                // n: the sum of the batch's numbers, so every event is counted once.
                mixed.data["n"] = json!(
                    ctx.events()
                        .iter()
                        .map(|e| e.data["n"].as_i64().unwrap_or(0))
                        .sum::<i64>()
                );
                log(
                    ctx.state(),
                    "batched",
                    &mixed,
                    ctx.events().len(),
                    now_ms(),
                    false,
                )
                .await;
            })
            .unwrap(),
        plain("single-skip", "t/single-skip")
            .singleton(SingletonMode::Skip, Some("event.data.k"))
            .raw_handler(|event: Event, ctx: Ctx| async move {
                let started = now_ms();
                tokio::time::sleep(Duration::from_millis(800)).await;
                log(ctx.state(), "single-skip", &event, 1, started, false).await;
            })
            .unwrap(),
        plain("single-cancel", "t/single-cancel")
            .singleton(SingletonMode::Cancel, Some("event.data.k"))
            .raw_handler(|event: Event, ctx: Ctx| async move {
                let started = now_ms();
                // The step watches the run's token: cancelling the run reaches it there (its
                // result is then not recorded, and the run stops).
                let _: bool = ctx
                    .step()
                    .run("work", || async {
                        tokio::select! {
                            _ = ctx.cancelled() => {
                                log(ctx.state(), "single-cancel", &event, 1, started, true).await;
                                Ok::<_, Error>(true)
                            }
                            _ = tokio::time::sleep(Duration::from_secs(8)) => Ok(false),
                        }
                    })
                    .await?;
                log(ctx.state(), "single-cancel", &event, 1, started, false).await;
                Ok::<_, Error>(())
            })
            .unwrap(),
        plain("debounced", "t/debounce")
            .debounce(Duration::from_secs(1), Some("event.data.k"))
            .debounce_max_wait(Duration::from_secs(2))
            .raw_handler(|event: Event, ctx: Ctx| async move {
                log(ctx.state(), "debounced", &event, 1, now_ms(), false).await;
            })
            .unwrap(),
        plain("ordered", "t/order")
            .ordered(Some("event.data.k"))
            .raw_handler(|event: Event, ctx: Ctx| async move {
                let started: i64 = ctx
                    .step()
                    .run("start", || async { Ok::<_, Error>(now_ms()) })
                    .await?;
                ctx.step()
                    .sleep("pause", Duration::from_millis(200))
                    .await?;
                log(ctx.state(), "ordered", &event, 1, started, false).await;
                Ok::<_, Error>(())
            })
            .unwrap(),
        plain("cancellable", "t/cancellable")
            .cancel_on("t/cancel", Match::field("data.k"))
            .raw_handler(|event: Event, ctx: Ctx| async move {
                let started: i64 = ctx
                    .step()
                    .run("start", || async { Ok::<_, Error>(now_ms()) })
                    .await?;
                ctx.step().sleep("long", Duration::from_secs(3)).await?;
                log(ctx.state(), "cancellable", &event, 1, started, false).await;
                Ok::<_, Error>(())
            })
            .unwrap(),
    ]
}

fn runtime(db: &Database) -> JobsRuntime {
    let rt = JobsRuntime::with_settings(
        Arc::new(PgQueue::new(db.clone())),
        Default::default(),
        WorkerSettings::default()
            .with_concurrency(16)
            .with_lease(Duration::from_secs(3))
            .with_poll_interval(Duration::from_millis(100)),
    );
    for f in functions(db) {
        rt.register(f).unwrap();
    }
    rt
}

/// Not a test on its own: the second worker process of `flow_control_holds_across_two_processes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only as the child process of flow_control_holds_across_two_processes"]
async fn flow_child_worker() {
    let url = std::env::var(CHILD_ENV).expect("started by the parent test");
    let db = Database::from_config(DbConfig::new(&url).unwrap()).unwrap();
    runtime(&db).start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(300)).await;
}

struct ChildProcess(Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(diesel::QueryableByName, Debug, Clone)]
struct Run {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Integer)]
    n: i32,
    #[diesel(sql_type = Integer)]
    events: i32,
    #[diesel(sql_type = BigInt)]
    started_ms: i64,
    #[diesel(sql_type = BigInt)]
    finished_ms: i64,
    #[diesel(sql_type = Bool)]
    cancelled: bool,
    #[diesel(sql_type = Nullable<Text>)]
    _unused: Option<String>,
}

async fn runs(db: &Database, function: &str) -> Vec<Run> {
    let mut conn = db.get().await.unwrap();
    diesel::sql_query(
        "SELECT key, n, events, started_ms, finished_ms, cancelled, NULL::text AS _unused \
         FROM flow_log WHERE function = $1 ORDER BY started_ms, n",
    )
    .bind::<Text, _>(function)
    .load(&mut conn)
    .await
    .unwrap()
}

async fn until_runs(
    db: &Database,
    function: &str,
    what: &str,
    check: impl Fn(&[Run]) -> bool,
) -> Vec<Run> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let r = runs(db, function).await;
        if check(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {what}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn events(name: &str, keys: &[&str], per_key: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for n in 0..per_key {
        for k in keys {
            out.push(Event::new(name, json!({ "k": k, "n": n })));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_holds_across_two_processes() {
    let test_db = support::TestDb::create("flow").await;
    let db = test_db.database();
    let rt = runtime(&db);
    rt.prepare().await.unwrap();
    db.get()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE flow_log (function text, key text, n int, events int, started_ms bigint, \
             finished_ms bigint, cancelled bool)",
        )
        .await
        .unwrap();
    let _child = ChildProcess(
        Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "flow_child_worker", "--nocapture"])
            .env(CHILD_ENV, &test_db.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    rt.start().await.unwrap();

    // Throttle: 2 per second, burst 1: a key's i-th run starts no sooner than i × 500 ms.
    let sent = now_ms();
    rt.send_many(events("t/throttle", &["a", "b"], 6))
        .await
        .unwrap();
    // Rate limit: 3 per minute per key.
    rt.send_many(events("t/rate", &["a", "b"], 10))
        .await
        .unwrap();
    // Batches of at most 5 per key: 12 events of a, 3 of b.
    let mut batch = events("t/batch", &["a"], 12);
    batch.extend(events("t/batch", &["b"], 3));
    rt.send_many(batch).await.unwrap();
    // Singleton, skip: three events per key at once, one run per key.
    rt.send_many(events("t/single-skip", &["a", "b"], 3))
        .await
        .unwrap();
    // Ordering: five per key, each run taking a 200 ms sleep.
    rt.send_many(events("t/order", &["a", "b"], 5))
        .await
        .unwrap();
    // Singleton, cancel: a first run, then, once it runs, a second that cancels it.
    rt.send(Event::new("t/single-cancel", json!({ "k": "a", "n": 0 })))
        .await
        .unwrap();

    let throttled = until_runs(&db, "throttled", "12 throttled runs", |r| r.len() == 12).await;
    for key in ["a", "b"] {
        let mut starts: Vec<i64> = throttled
            .iter()
            .filter(|r| r.key == key)
            .map(|r| r.started_ms)
            .collect();
        starts.sort_unstable();
        for (i, start) in starts.iter().enumerate() {
            assert!(
                start - sent >= i as i64 * 500 - 50,
                "throttled run {i} of {key} started {} ms after the send",
                start - sent
            );
        }
    }

    until_runs(&db, "rate-limited", "6 rate-limited runs", |r| r.len() >= 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rated = runs(&db, "rate-limited").await;
    for key in ["a", "b"] {
        assert_eq!(
            rated.iter().filter(|r| r.key == key).count(),
            3,
            "key {key}: {rated:?}"
        );
    }
    let stats = rt.admin().unwrap().stats().await.unwrap();
    let dropped = stats
        .iter()
        .find(|s| s.function_id == "rate-limited")
        .map(|s| s.rate_limited);
    assert_eq!(dropped, Some(14), "the dropped events are counted");

    let batched = until_runs(&db, "batched", "every batched event", |r| {
        r.iter().map(|r| r.events).sum::<i32>() == 15
    })
    .await;
    assert!(
        batched.iter().all(|r| r.key != "MIXED"),
        "one key per batch: {batched:?}"
    );
    assert!(
        batched.iter().all(|r| r.events <= 5),
        "at most 5 per batch: {batched:?}"
    );
    let sum = |k: &str| {
        batched
            .iter()
            .filter(|r| r.key == k)
            .map(|r| r.n)
            .sum::<i32>()
    };
    assert_eq!(
        (sum("a"), sum("b")),
        ((0..12).sum(), (0..3).sum()),
        "every event once"
    );

    until_runs(&db, "single-skip", "a run per key", |r| r.len() >= 2).await;
    // Long enough for a skipped event's run to have appeared, had it not been skipped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let skipped = runs(&db, "single-skip").await;
    assert_eq!(
        skipped.len(),
        2,
        "one run per key, the others skipped: {skipped:?}"
    );

    let ordered = until_runs(&db, "ordered", "10 ordered runs", |r| r.len() == 10).await;
    for key in ["a", "b"] {
        let of_key: Vec<&Run> = ordered.iter().filter(|r| r.key == key).collect();
        for pair in of_key.windows(2) {
            assert!(pair[0].n < pair[1].n, "{key}: send order: {of_key:?}");
            assert!(
                pair[1].started_ms >= pair[0].finished_ms,
                "{key}: one after another: {of_key:?}"
            );
        }
    }

    // Cancel mode: once the first run is in its step, a second event cancels it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while support::count(&db, "SELECT count(*) AS n FROM infra_jobs WHERE function_id = 'single-cancel' AND locked_by IS NOT NULL").await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the first singleton run never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.send(Event::new("t/single-cancel", json!({ "k": "a", "n": 1 })))
        .await
        .unwrap();
    let cancelled = until_runs(&db, "single-cancel", "both singleton runs", |r| {
        r.len() == 2
    })
    .await;
    let first = cancelled.iter().find(|r| r.n == 0).unwrap();
    let second = cancelled.iter().find(|r| r.n == 1).unwrap();
    assert!(
        first.cancelled,
        "the running run's step saw its token cancelled"
    );
    assert!(!second.cancelled, "the new run ran to its end");

    // cancel_on: two sleeping runs; a's is cancelled, b's ends.
    rt.send_many(events("t/cancellable", &["a", "b"], 1))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while support::count(
        &db,
        "SELECT count(*) AS n FROM infra_jobs_waits WHERE event = 't/cancel'",
    )
    .await
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runs never slept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.send(Event::new("t/cancel", json!({ "k": "a" })))
        .await
        .unwrap();
    let ended = until_runs(&db, "cancellable", "b's run", |r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ended = runs(&db, "cancellable")
        .await
        .into_iter()
        .chain(ended)
        .map(|r| r.key)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        ended.into_iter().collect::<Vec<_>>(),
        ["b"],
        "a's run was cancelled"
    );

    // Debounce with a maximum wait: events every 250 ms for 3.5 s on key a.
    let mut n = 0;
    let started = now_ms();
    while now_ms() - started < 3_500 {
        rt.send(Event::new("t/debounce", json!({ "k": "a", "n": n })))
            .await
            .unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let last = n - 1;
    let debounced = until_runs(&db, "debounced", "the last event's run", |r| {
        r.iter().any(|r| r.n == last)
    })
    .await;
    assert!(
        debounced.len() >= 2,
        "the maximum wait ran one before the events stopped: {debounced:?}"
    );
    assert!(debounced[0].n < last, "{debounced:?}");

    rt.shutdown().await;
}
