//! Durable steps on both queues: replay skips finished steps, a failing step is retried on
//! its own, sleeps and waits park the run and resume it, invocations return the invoked
//! function's output, `send_event` sends once, `cancel_on` cancels a parked run, and a
//! recorded result of another type is a typed error.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infra_core::{Error, ErrorKind, Event, EventSender, JobBackend};
use infra_jobs::{
    Function, JobContext, JobsRuntime, Match, MemoryQueue, Outcome, PgQueue, WorkerSettings,
};
use serde_json::{Value, json};

/// Counts per step how many times its closure ran.
#[derive(Clone, Default)]
struct Counters(Arc<Mutex<HashMap<String, u32>>>);

impl Counters {
    fn hit(&self, step: &str) -> u32 {
        let mut map = self.0.lock().unwrap();
        let n = map.entry(step.to_owned()).or_default();
        *n += 1;
        *n
    }
    fn get(&self, step: &str) -> u32 {
        self.0.lock().unwrap().get(step).copied().unwrap_or(0)
    }
}

fn runtime(queue: Arc<dyn JobBackend>) -> JobsRuntime {
    JobsRuntime::with_settings(
        queue,
        Default::default(),
        WorkerSettings::default()
            .with_concurrency(16)
            .with_poll_interval(Duration::from_millis(50)),
    )
}

/// Polls `check` until it holds (60 s at most on a loaded machine).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three steps and a loop; the third step fails twice before it succeeds. Each closure must
/// run once, except the flaky one (three times), and the function's output must hold every
/// step's recorded result.
async fn replay_skips_finished_steps(queue: Arc<dyn JobBackend>) {
    let rt = runtime(queue);
    let counters = Counters::default();
    let done: Arc<Mutex<Option<Value>>> = Arc::default();
    let (c, d) = (counters.clone(), done.clone());
    rt.register(
        Function::builder("three-steps")
            .on_event("t/three")
            .retries(3)
            .backoff(infra_core::Backoff::new(
                Duration::from_millis(10),
                Duration::from_millis(20),
            ))
            .raw_handler(move |event: Event, ctx: JobContext| {
                let (c, d) = (c.clone(), d.clone());
                async move {
                    let step = ctx.step();
                    let a: u32 = step
                        .run("a", || async {
                            c.hit("a");
                            Ok::<_, Error>(event.data["n"].as_u64().unwrap_or(0) as u32)
                        })
                        .await?;
                    let mut looped = Vec::new();
                    for i in 0..3u32 {
                        let v: u32 = step
                            .run("loop", || async {
                                c.hit(&format!("loop{i}"));
                                Ok::<_, Error>(i * 10)
                            })
                            .await?;
                        looped.push(v);
                    }
                    let flaky: String = step
                        .run("flaky", || async {
                            if c.hit("flaky") < 3 {
                                Err(Error::unavailable("not yet"))
                            } else {
                                Ok("ok".to_owned())
                            }
                        })
                        .await?;
                    c.hit("after-flaky");
                    let out = json!({ "a": a, "looped": looped, "flaky": flaky });
                    *d.lock().unwrap() = Some(out.clone());
                    Ok::<_, Error>(out)
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    rt.send(Event::new("t/three", json!({ "n": 7 })))
        .await
        .unwrap();
    eventually("the run's end", || done.lock().unwrap().is_some()).await;
    rt.shutdown().await;
    assert_eq!(counters.get("a"), 1, "a finished step never runs again");
    for i in 0..3 {
        assert_eq!(counters.get(&format!("loop{i}")), 1, "loop step {i}");
    }
    assert_eq!(
        counters.get("flaky"),
        3,
        "the failing step is retried on its own"
    );
    assert_eq!(counters.get("after-flaky"), 1);
    assert_eq!(
        done.lock().unwrap().clone().unwrap(),
        json!({ "a": 7, "looped": [0, 10, 20], "flaky": "ok" })
    );
}

/// A sleep parks the run (no worker slot held: a one-slot worker runs another job meanwhile),
/// and a wait resumes on the matching event only, with that event.
async fn sleeps_and_waits_park_the_run(queue: Arc<dyn JobBackend>) {
    let rt = JobsRuntime::with_settings(
        queue,
        Default::default(),
        WorkerSettings::default()
            .with_concurrency(1)
            .with_poll_interval(Duration::from_millis(50)),
    );
    let counters = Counters::default();
    let got: Arc<Mutex<Vec<Option<Event>>>> = Arc::default();
    let (c, g) = (counters.clone(), got.clone());
    rt.register(
        Function::builder("sleeper")
            .on_event("t/sleep")
            .raw_handler(move |_event: Event, ctx: JobContext| {
                let (c, g) = (c.clone(), g.clone());
                async move {
                    let step = ctx.step();
                    step.run("before", || async {
                        c.hit("before");
                        Ok::<_, Error>(())
                    })
                    .await?;
                    step.sleep("nap", Duration::from_millis(300)).await?;
                    let paid = step
                        .wait_for_event(
                            "paid",
                            "t/paid",
                            Match::field("data.user"),
                            Duration::from_secs(60),
                        )
                        .await?;
                    let never = step
                        .wait_for_event("never", "t/never", Match::Any, Duration::from_millis(200))
                        .await?;
                    c.hit("end");
                    g.lock().unwrap().extend([paid, never]);
                    Ok::<_, Error>(())
                }
            })
            .unwrap(),
    )
    .unwrap();
    let c = counters.clone();
    rt.register(
        Function::builder("other")
            .on_event("t/other")
            .raw_handler(move |_event: Event, _ctx: JobContext| {
                let c = c.clone();
                async move {
                    c.hit("other");
                    Outcome::success()
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    rt.send(Event::new("t/sleep", json!({ "user": "u1" })))
        .await
        .unwrap();
    eventually("the first step", || counters.get("before") == 1).await;
    rt.send(Event::new("t/other", json!({}))).await.unwrap();
    eventually("the other job, while the first sleeps", || {
        counters.get("other") == 1
    })
    .await;
    // Wait for the run to park on the wait, then send a non-matching and a matching event.
    let admin = rt.admin().unwrap();
    let mut matched = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !matched {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never waited"
        );
        rt.send(Event::new("t/paid", json!({ "user": "u2", "n": 0 })))
            .await
            .unwrap();
        rt.send(Event::new("t/paid", json!({ "user": "u1", "n": 1 })))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        matched = counters.get("end") == 1 || !got.lock().unwrap().is_empty();
        let _ = admin.stats().await.unwrap();
    }
    eventually("the run's end", || counters.get("end") == 1).await;
    rt.shutdown().await;
    assert_eq!(counters.get("before"), 1);
    let got = got.lock().unwrap().clone();
    let paid = got[0].clone().expect("the matching event resumed the wait");
    assert_eq!(paid.data["user"], "u1");
    assert_eq!(got[1], None, "the second wait timed out");
}

/// `invoke` returns the invoked function's output; `send_event` sends once; a step whose
/// recorded result has another type is a `Decode` error.
async fn invoke_send_and_typed_results(queue: Arc<dyn JobBackend>) {
    let rt = runtime(queue);
    let counters = Counters::default();
    let out: Arc<Mutex<Option<Value>>> = Arc::default();
    let (c, o) = (counters.clone(), out.clone());
    rt.register(
        Function::builder("parent")
            .on_event("t/parent")
            .raw_handler(move |_event: Event, ctx: JobContext| {
                let (c, o) = (c.clone(), o.clone());
                async move {
                    let step = ctx.step();
                    let doubled: i64 = step
                        .invoke(
                            "double",
                            "child",
                            json!({ "x": 21 }),
                            Duration::from_secs(60),
                        )
                        .await?;
                    let ids = step
                        .send_event("notify", vec![Event::new("t/notified", json!({}))])
                        .await?;
                    c.hit("parent-end");
                    *o.lock().unwrap() = Some(json!({ "doubled": doubled, "ids": ids.len() }));
                    Ok::<_, Error>(())
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.register(
        Function::builder("child")
            .on_event("t/never-sent")
            .raw_handler(|event: Event, _ctx: JobContext| async move {
                Outcome::Success(json!(event.data["x"].as_i64().unwrap_or(0) * 2))
            })
            .unwrap(),
    )
    .unwrap();
    let c = counters.clone();
    rt.register(
        Function::builder("notified")
            .on_event("t/notified")
            .raw_handler(move |_event: Event, _ctx: JobContext| {
                let c = c.clone();
                async move {
                    c.hit("notified");
                    Outcome::success()
                }
            })
            .unwrap(),
    )
    .unwrap();
    let typed: Arc<Mutex<Option<ErrorKind>>> = Arc::default();
    let t = typed.clone();
    rt.register(
        Function::builder("retyped")
            .on_event("t/retyped")
            .retries(1)
            .backoff(infra_core::Backoff::new(
                Duration::from_millis(10),
                Duration::from_millis(10),
            ))
            .raw_handler(move |_event: Event, ctx: JobContext| {
                let t = t.clone();
                async move {
                    let step = ctx.step();
                    let first = t.lock().unwrap().is_none();
                    if first {
                        // Record a string, then fail so the run is tried again and reads it.
                        let _: String = step
                            .run("value", || async { Ok::<_, Error>("text".to_owned()) })
                            .await?;
                        *t.lock().unwrap() = Some(ErrorKind::Backend);
                        return Err(Error::unavailable("again"));
                    }
                    let read: std::result::Result<u64, Error> =
                        step.run("value", || async { Ok::<_, Error>(2u64) }).await;
                    *t.lock().unwrap() = Some(read.map(|_| ErrorKind::Backend).unwrap_err().kind());
                    Ok::<_, Error>(())
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    rt.send(Event::new("t/parent", json!({}))).await.unwrap();
    rt.send(Event::new("t/retyped", json!({}))).await.unwrap();
    eventually("the parent's end", || out.lock().unwrap().is_some()).await;
    eventually("the notified run", || counters.get("notified") == 1).await;
    eventually("the typed read", || {
        matches!(*typed.lock().unwrap(), Some(ErrorKind::Decode))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rt.shutdown().await;
    assert_eq!(
        out.lock().unwrap().clone().unwrap(),
        json!({ "doubled": 42, "ids": 1 })
    );
    assert_eq!(counters.get("notified"), 1, "the event was sent once");
}

/// `cancel_on`: a matching event cancels a sleeping run, which then never ends.
async fn cancel_on_cancels_a_sleeping_run(queue: Arc<dyn JobBackend>) {
    let rt = runtime(queue);
    let counters = Counters::default();
    let c = counters.clone();
    rt.register(
        Function::builder("cancellable")
            .on_event("t/start")
            .cancel_on("t/cancel", Match::field("data.id"))
            .raw_handler(move |_event: Event, ctx: JobContext| {
                let c = c.clone();
                async move {
                    ctx.step()
                        .run("first", || async {
                            c.hit("first");
                            Ok::<_, Error>(())
                        })
                        .await?;
                    ctx.step().sleep("long", Duration::from_secs(2)).await?;
                    c.hit("end");
                    Ok::<_, Error>(())
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    rt.send(Event::new("t/start", json!({ "id": "a" })))
        .await
        .unwrap();
    rt.send(Event::new("t/start", json!({ "id": "b" })))
        .await
        .unwrap();
    eventually("both first steps", || counters.get("first") == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    rt.send(Event::new("t/cancel", json!({ "id": "a" })))
        .await
        .unwrap();
    eventually("the other run's end", || counters.get("end") >= 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rt.shutdown().await;
    assert_eq!(counters.get("end"), 1, "the cancelled run never resumed");
}

async fn pg_queue(test: &str) -> (support::TestDb, Arc<dyn JobBackend>) {
    let db = support::TestDb::create(test).await;
    let queue = Arc::new(PgQueue::new(db.database()));
    (db, queue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_replay_skips_finished_steps() {
    replay_skips_finished_steps(Arc::new(MemoryQueue::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replay_skips_finished_steps() {
    let (_db, queue) = pg_queue("steps_replay").await;
    replay_skips_finished_steps(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_sleeps_and_waits_park_the_run() {
    sleeps_and_waits_park_the_run(Arc::new(MemoryQueue::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sleeps_and_waits_park_the_run() {
    let (_db, queue) = pg_queue("steps_park").await;
    sleeps_and_waits_park_the_run(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_invoke_send_and_typed_results() {
    invoke_send_and_typed_results(Arc::new(MemoryQueue::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_invoke_send_and_typed_results() {
    let (_db, queue) = pg_queue("steps_invoke").await;
    invoke_send_and_typed_results(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cancel_on_cancels_a_sleeping_run() {
    cancel_on_cancels_a_sleeping_run(Arc::new(MemoryQueue::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancel_on_cancels_a_sleeping_run() {
    let (_db, queue) = pg_queue("steps_cancel").await;
    cancel_on_cancels_a_sleeping_run(queue).await;
}
