//! Durable steps at scale on PostgreSQL: 10,000 runs sleeping 1 s all wake and complete,
//! holding no worker while asleep; 10,000 runs waiting for events, of which the matching
//! half resume with their own event and the rest time out.
//!
//! Timings are measured and printed (`--nocapture`), never asserted: the lateness of each
//! wake (its actual resumption minus its planned time), and the process's resident memory
//! before and while the runs sleep.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use infra_core::{Error, Event, EventSender};
use infra_jobs::{Function, JobContext, JobsRuntime, Match, PgQueue, WorkerSettings};
use serde_json::json;

const RUNS: usize = 10_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// This process's resident memory in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn runtime(queue: Arc<PgQueue>) -> JobsRuntime {
    JobsRuntime::with_settings(
        queue,
        Default::default(),
        WorkerSettings::default()
            .with_concurrency(64)
            .with_claim_batch(200),
    )
}

async fn send_all(rt: &JobsRuntime, name: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let events = chunk
            .iter()
            .map(|i| Event::new(name, json!({ "id": format!("r{i}") })))
            .collect();
        rt.send_many(events).await.unwrap();
    }
}

async fn until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sleeping_runs_all_wake_and_hold_no_worker() {
    let test_db = support::TestDb::create("steps_sleep").await;
    let db = test_db.database();
    let queue = Arc::new(PgQueue::new(db.clone()));
    let rt = runtime(queue);
    let lateness: Arc<Mutex<Vec<i64>>> = Arc::default();
    let l = lateness.clone();
    rt.register(
        Function::builder("sleeper")
            .on_event("t/sleep")
            .raw_handler(move |_event: Event, ctx: JobContext| {
                let l = l.clone();
                async move {
                    let step = ctx.step();
                    let planned: i64 = step
                        .run("plan", || async { Ok::<_, Error>(now_ms() + 1_000) })
                        .await?;
                    step.sleep("nap", Duration::from_secs(1)).await?;
                    l.lock().unwrap().push(now_ms() - planned);
                    Ok::<_, Error>(())
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.prepare().await.unwrap();
    let rss_before = rss_kib();
    send_all(&rt, "t/sleep", RUNS).await;
    rt.start().await.unwrap();
    // While they sleep, none holds a lease (a worker or a slot): they are rows due later.
    let mut seen_parked = 0;
    let mut rss_asleep = 0;
    until("every run to end", Duration::from_secs(300), async || {
        let parked = support::count(
            &db,
            "SELECT count(*) AS n FROM infra_jobs WHERE locked_by IS NULL AND run_at > infra_jobs_now_ms() AND stepped",
        )
        .await;
        if parked > seen_parked {
            seen_parked = parked;
            rss_asleep = rss_kib();
        }
        lateness.lock().unwrap().len() >= RUNS
    })
    .await;
    until("the queue to empty", Duration::from_secs(60), async || {
        support::count(&db, "SELECT count(*) AS n FROM infra_jobs").await == 0
    })
    .await;
    rt.shutdown().await;
    let mut late = lateness.lock().unwrap().clone();
    assert_eq!(late.len(), RUNS, "every run woke once");
    assert!(seen_parked > 0, "runs were seen parked");
    late.sort_unstable();
    println!(
        "10,000 runs sleeping 1 s: wake lateness p50 {} ms, p90 {} ms, p99 {} ms, max {} ms; \
         at most {seen_parked} asleep at once (rows, no lease); RSS {rss_before} KiB before, \
         {rss_asleep} KiB with the most asleep",
        percentile(&late, 0.5),
        percentile(&late, 0.9),
        percentile(&late, 0.99),
        late[late.len() - 1],
    );
    assert!(late[0] >= -50, "no run woke early: {}", late[0]);
}

type WaitResult = (String, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_waiting_runs_resume_on_their_event_or_time_out() {
    let test_db = support::TestDb::create("steps_wait").await;
    let db = test_db.database();
    let queue = Arc::new(PgQueue::new(db.clone()));
    let rt = runtime(queue);
    // (the waiting run's key, the key of the event that resumed it or None at its timeout)
    let results: Arc<Mutex<Vec<WaitResult>>> = Arc::default();
    let r = results.clone();
    rt.register(
        Function::builder("waiter")
            .on_event("t/wait")
            .raw_handler(move |event: Event, ctx: JobContext| {
                let r = r.clone();
                async move {
                    let got = ctx
                        .step()
                        .wait_for_event(
                            "paid",
                            "t/paid",
                            Match::field("data.id"),
                            Duration::from_secs(60),
                        )
                        .await?;
                    let id = event.data["id"].as_str().unwrap_or_default().to_owned();
                    let matched = got.map(|e| e.data["id"].as_str().unwrap_or_default().to_owned());
                    r.lock().unwrap().push((id, matched));
                    Ok::<_, Error>(())
                }
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    let started = std::time::Instant::now();
    send_all(&rt, "t/wait", RUNS).await;
    until("every run to wait", Duration::from_secs(300), async || {
        support::count(&db, "SELECT count(*) AS n FROM infra_jobs_waits").await == RUNS as i64
    })
    .await;
    let waiting_in = started.elapsed();
    // Events for the even runs only, sent in batches as an app would.
    let sent = std::time::Instant::now();
    for chunk in (0..RUNS).step_by(2).collect::<Vec<_>>().chunks(500) {
        let events = chunk
            .iter()
            .map(|i| Event::new("t/paid", json!({ "id": format!("r{i}") })))
            .collect();
        rt.send_many(events).await.unwrap();
    }
    let delivered_in = sent.elapsed();
    until(
        "the matching half to resume",
        Duration::from_secs(300),
        async || results.lock().unwrap().len() >= RUNS / 2,
    )
    .await;
    let resumed_in = sent.elapsed();
    until(
        "the rest to time out",
        Duration::from_secs(300),
        async || results.lock().unwrap().len() >= RUNS,
    )
    .await;
    rt.shutdown().await;
    let results = results.lock().unwrap().clone();
    assert_eq!(results.len(), RUNS, "every run ended once");
    for (id, matched) in &results {
        let n: usize = id[1..].parse().unwrap();
        if n.is_multiple_of(2) {
            assert_eq!(
                matched.as_deref(),
                Some(id.as_str()),
                "run {id} got its own event"
            );
        } else {
            assert_eq!(matched, &None, "run {id} timed out");
        }
    }
    println!(
        "10,000 waiting runs (all waiting {} ms after the first event): 5,000 events resumed \
         their 5,000 runs {} ms after the first send (the sends took {} ms)",
        waiting_in.as_millis(),
        resumed_in.as_millis(),
        delivered_in.as_millis()
    );
}
