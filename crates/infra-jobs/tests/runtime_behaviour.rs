//! The runtime's behaviour on both queues: concurrency limits, priority, delays, cron,
//! debounce, retries with dead letters and replay.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infra_core::{Event, EventSender, JobBackend, JobFilter};
use infra_jobs::{
    Backoff, CRON_EVENT_NAME, Function, JobContext, JobsRuntime, MemoryQueue, Outcome, PgQueue,
    WorkerSettings,
};
use serde_json::json;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn runtime(queue: Arc<dyn JobBackend>, concurrency: usize) -> JobsRuntime {
    JobsRuntime::with_settings(
        queue,
        Default::default(),
        WorkerSettings::default()
            .with_concurrency(concurrency)
            .with_poll_interval(Duration::from_millis(100)),
    )
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Log = Arc<Mutex<Vec<serde_json::Value>>>;

fn recorder(
    log: &Log,
) -> impl Fn(Event, JobContext) -> std::future::Ready<Outcome> + Clone + use<> {
    let log = log.clone();
    move |event: Event, _ctx| {
        let mut data = event.data.clone();
        data["_started_ms"] = json!(now_ms());
        data["_ts"] = json!(event.ts);
        log.lock().unwrap().push(data);
        std::future::ready(Outcome::success())
    }
}

async fn concurrency_limits_are_never_exceeded(queue: Arc<dyn JobBackend>) {
    let rt = runtime(queue, 16);
    #[derive(Default)]
    struct Gauge {
        now: HashMap<String, u32>,
        max: HashMap<String, u32>,
        done: u32,
    }
    let gauge = Arc::new(Mutex::new(Gauge::default()));
    let g = gauge.clone();
    rt.register(
        Function::builder("limited")
            .on_event("t/limited")
            .concurrency(3)
            .concurrency_per_key(2, "event.data.user")
            .raw_handler(move |event: Event, _| {
                let g = g.clone();
                async move {
                    let user = event.data["user"].as_str().unwrap().to_owned();
                    for key in [user.clone(), "*".to_owned()] {
                        let mut s = g.lock().unwrap();
                        let n = s.now.entry(key.clone()).or_default();
                        *n += 1;
                        let n = *n;
                        let m = s.max.entry(key).or_default();
                        *m = (*m).max(n);
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    let mut s = g.lock().unwrap();
                    for key in [user, "*".to_owned()] {
                        *s.now.get_mut(&key).unwrap() -= 1;
                    }
                    s.done += 1;
                    Outcome::success()
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    let events = (0..30)
        .map(|i| {
            Event::new(
                "t/limited",
                json!({ "user": if i % 3 == 0 { "a" } else { "b" } }),
            )
        })
        .collect();
    rt.send_many(events).await.unwrap();
    wait_until("30 runs", || gauge.lock().unwrap().done == 30).await;
    let max = gauge.lock().unwrap().max.clone();
    let s = Gauge {
        max,
        ..Default::default()
    };
    assert!(s.max["*"] <= 3, "global limit 3, saw {}", s.max["*"]);
    assert!(
        s.max["a"] <= 2 && s.max["b"] <= 2,
        "per-user limit 2, saw {:?}",
        s.max
    );
    assert!(
        s.max["*"] >= 2,
        "runs did overlap, so the limit was exercised"
    );
    drop(s);
    rt.shutdown().await;
}

async fn priority_orders_waiting_runs(queue: Arc<dyn JobBackend>) {
    let rt = runtime(queue, 1);
    let log: Log = Default::default();
    for (id, event, priority) in [("low", "t/low", 0), ("high", "t/high", 10)] {
        rt.register(
            Function::builder(id)
                .on_event(event)
                .priority(priority)
                .raw_handler(recorder(&log))
                .unwrap(),
        )
        .unwrap();
    }
    let mut events: Vec<Event> = (0..5)
        .map(|n| Event::new("t/low", json!({ "p": "low", "n": n })))
        .collect();
    events.extend((0..5).map(|n| Event::new("t/high", json!({ "p": "high", "n": n }))));
    rt.send_many(events).await.unwrap();
    rt.start().await.unwrap();
    wait_until("10 runs", || log.lock().unwrap().len() == 10).await;
    let order: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|d| d["p"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        &order[..5],
        &["high"; 5],
        "all high-priority runs first: {order:?}"
    );
    rt.shutdown().await;
}

async fn delayed_events_do_not_run_early(queue: Arc<dyn JobBackend>) {
    let rt = runtime(queue, 4);
    let log: Log = Default::default();
    rt.register(
        Function::builder("delayed")
            .on_event("t/delayed")
            .raw_handler(recorder(&log))
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    let due = now_ms() + 800;
    rt.send(Event::new("t/delayed", json!({})).with_ts(due))
        .await
        .unwrap();
    wait_until("the delayed run", || log.lock().unwrap().len() == 1).await;
    let started = log.lock().unwrap()[0]["_started_ms"].as_i64().unwrap();
    assert!(started >= due, "started {started} before due {due}");
    rt.shutdown().await;
}

async fn cron_fires_on_schedule(queue: Arc<dyn JobBackend>) {
    let rt = runtime(queue, 4);
    let log: Log = Default::default();
    rt.register(
        Function::builder("every-second")
            .on_cron("* * * * * *")
            .raw_handler({
                let log = log.clone();
                move |event: Event, _| {
                    assert_eq!(event.name, CRON_EVENT_NAME);
                    log.lock()
                        .unwrap()
                        .push(json!({ "ts": event.ts, "started": now_ms() }));
                    std::future::ready(Outcome::success())
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    wait_until("two cron ticks", || log.lock().unwrap().len() >= 2).await;
    rt.shutdown().await;
    let log = log.lock().unwrap();
    let (a, b) = (
        log[0]["ts"].as_i64().unwrap(),
        log[1]["ts"].as_i64().unwrap(),
    );
    assert_eq!(a % 1000, 0, "fires on the second");
    assert!(b > a, "one run per tick");
    for run in log.iter() {
        assert!(run["started"].as_i64().unwrap() >= run["ts"].as_i64().unwrap());
    }
}

async fn debounce_runs_once_with_the_last_event(queue: Arc<dyn JobBackend>) {
    let rt = runtime(queue, 4);
    let log: Log = Default::default();
    rt.register(
        Function::builder("debounced")
            .on_event("t/typing")
            .debounce(Duration::from_millis(400), Some("event.data.user"))
            .raw_handler(recorder(&log))
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    for n in 0..5 {
        rt.send(Event::new("t/typing", json!({ "user": "a", "n": n })))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.send(Event::new("t/typing", json!({ "user": "b", "n": 9 })))
        .await
        .unwrap();
    wait_until("both users' runs", || log.lock().unwrap().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "one run per user: {log:?}");
    let a = log.iter().find(|d| d["user"] == "a").unwrap();
    assert_eq!(a["n"], 4, "runs with the last event");
    rt.shutdown().await;
}

async fn retries_dead_letters_and_replay(queue: Arc<dyn JobBackend>) {
    let rt = runtime(queue, 4);
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    rt.register(
        Function::builder("fails-twice-then-for-good")
            .on_event("t/fail")
            .retries(2)
            .backoff(Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_secs(1),
                jitter: 0.5,
            })
            .raw_handler(move |_, ctx: JobContext| {
                seen.lock().unwrap().push((ctx.attempt(), now_ms()));
                std::future::ready(if ctx.attempt() < 3 {
                    Outcome::retry("try again")
                } else {
                    Outcome::fail("gave up")
                })
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    rt.send(Event::new("t/fail", json!({ "x": 1 })))
        .await
        .unwrap();
    let admin = rt.admin().expect("a queue runtime has an admin");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let d = admin
            .dead_letters(&JobFilter::function("fails-twice-then-for-good"), 10)
            .await
            .unwrap();
        if !d.is_empty() {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let runs = attempts.lock().unwrap().clone();
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(
        runs[1].1 - runs[0].1 >= 50,
        "backoff waited (≥ half the base with jitter)"
    );
    assert_eq!((dead[0].attempts, dead[0].error.as_str()), (3, "gave up"));
    admin.replay(dead[0].id).await.unwrap();
    wait_until("the replay", || attempts.lock().unwrap().len() == 4).await;
    assert_eq!(
        attempts.lock().unwrap()[3].0,
        1,
        "a replay starts from attempt 1"
    );
    let stats = rt.stats().await.unwrap();
    let f = stats.function("fails-twice-then-for-good").unwrap();
    assert_eq!((f.runs.attempts, f.runs.failures), (4, 4));
    rt.shutdown().await;
}

macro_rules! on_both_queues {
    ($($case:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(Arc::new(MemoryQueue::new())).await; })*
        }
        mod postgres {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let db = support::TestDb::create(stringify!($case)).await;
                super::$case(Arc::new(PgQueue::new(db.database()))).await;
            })*
        }
    };
}

on_both_queues!(
    concurrency_limits_are_never_exceeded,
    priority_orders_waiting_runs,
    delayed_events_do_not_run_early,
    cron_fires_on_schedule,
    debounce_runs_once_with_the_last_event,
    retries_dead_letters_and_replay,
);
