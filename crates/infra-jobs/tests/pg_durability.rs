//! PostgreSQL durability: the outbox (`send_in_transaction`) and a worker killed with SIGKILL
//! in the middle of 2,000 jobs, whose jobs another worker finishes.

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use infra_core::{Event, EventSender};
use infra_db::{Database, DbConfig};
use infra_jobs::{Function, JobContext, JobsRuntime, Outcome, PgQueue, WorkerSettings};
use serde_json::json;

const CHILD_ENV: &str = "INFRA_JOBS_TEST_CHILD_DB";

fn runtime(db: &Database, concurrency: usize) -> JobsRuntime {
    JobsRuntime::with_settings(
        Arc::new(PgQueue::new(db.clone())),
        Default::default(),
        WorkerSettings::default()
            .with_concurrency(concurrency)
            .with_lease(Duration::from_secs(1))
            .with_poll_interval(Duration::from_millis(100)),
    )
}

/// The function both workers run: records its effect once per idempotency key.
fn effect_function(db: &Database) -> Function {
    Function::builder("record-effect")
        .on_event("t/effect")
        .idempotency(["event.data.key"], Duration::from_secs(3600))
        .with_state(db.clone())
        .raw_handler(|event: Event, ctx: JobContext<Database>| async move {
            let db = ctx.state().clone();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut conn = db.get().await?;
            let key = event.data["key"].as_str().unwrap_or_default().to_owned();
            diesel::sql_query("INSERT INTO effects (key) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind::<diesel::sql_types::Text, _>(key)
                .execute(&mut conn)
                .await
                .map_err(infra_db::map_diesel_error)?;
            Ok::<_, infra_core::Error>(())
        })
        .unwrap()
}

/// Not a test on its own: the worker process `a_killed_worker_loses_no_job` starts and kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only as the child process of a_killed_worker_loses_no_job"]
async fn child_worker_process() {
    let url = std::env::var(CHILD_ENV).expect("started by the parent test");
    let db = Database::from_config(DbConfig::new(&url).unwrap()).unwrap();
    let rt = runtime(&db, 4);
    rt.register(effect_function(&db)).unwrap();
    rt.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_job() {
    let test_db = support::TestDb::create("sigkill").await;
    let db = test_db.database();
    let sender = runtime(&db, 1);
    sender.register(effect_function(&db)).unwrap();
    sender.prepare().await.unwrap();
    db.get()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE effects (key text PRIMARY KEY)")
        .await
        .unwrap();
    // Every event twice: the idempotency key keeps one job each.
    for round in 0..2 {
        for chunk in (0..2000).collect::<Vec<_>>().chunks(500) {
            let events = chunk
                .iter()
                .map(|i| {
                    Event::new(
                        "t/effect",
                        json!({ "key": format!("k{i}"), "round": round }),
                    )
                })
                .collect();
            sender.send_many(events).await.unwrap();
        }
    }
    assert_eq!(
        support::count(&db, "SELECT count(*) AS n FROM infra_jobs").await,
        2000
    );

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_worker_process",
            "--nocapture",
        ])
        .env(CHILD_ENV, &test_db.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while support::count(&db, "SELECT count(*) AS n FROM effects").await < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the child never worked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: no cleanup, leases left behind
    child.wait().unwrap();
    let left = support::count(&db, "SELECT count(*) AS n FROM infra_jobs").await;
    assert!(left > 0, "killed in the middle, with jobs left");
    let leased = support::count(
        &db,
        "SELECT count(*) AS n FROM infra_jobs WHERE locked_by IS NOT NULL",
    )
    .await;

    let rescuer = runtime(&db, 8);
    rescuer.register(effect_function(&db)).unwrap();
    rescuer.start().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while support::count(&db, "SELECT count(*) AS n FROM infra_jobs").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "jobs left behind");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rescuer.shutdown().await;
    assert_eq!(
        support::count(&db, "SELECT count(*) AS n FROM effects").await,
        2000
    );
    eprintln!("killed with {left} jobs left, {leased} of them leased by the dead worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_in_transaction_is_an_outbox() {
    let test_db = support::TestDb::create("outbox").await;
    let db = test_db.database();
    let rt = runtime(&db, 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    rt.register(
        Function::builder("outboxed")
            .on_event("t/outbox")
            .raw_handler(move |event: Event, _| {
                log.lock().unwrap().push(event.data["n"].as_i64().unwrap());
                std::future::ready(Outcome::success())
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    let mut conn = db.get().await.unwrap();
    conn.batch_execute("BEGIN").await.unwrap();
    rt.send_in_transaction(&mut conn, Event::new("t/outbox", json!({ "n": 1 })))
        .await
        .unwrap();
    conn.batch_execute("ROLLBACK").await.unwrap();
    conn.batch_execute("BEGIN").await.unwrap();
    rt.send_in_transaction(&mut conn, Event::new("t/outbox", json!({ "n": 2 })))
        .await
        .unwrap();
    conn.batch_execute("COMMIT").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "committed job never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![2],
        "the rolled-back job does not exist"
    );
    assert_eq!(
        support::count(&db, "SELECT count(*) AS n FROM infra_jobs").await,
        0
    );
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_an_idle_worker_long_before_its_poll() {
    let test_db = support::TestDb::create("notify").await;
    let db = test_db.database();
    // A one-minute poll: a run within the 20 s deadline can only come from LISTEN/NOTIFY.
    let rt = JobsRuntime::with_settings(
        Arc::new(PgQueue::new(db.clone())),
        Default::default(),
        WorkerSettings::default().with_poll_interval(Duration::from_secs(60)),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    rt.register(
        Function::builder("woken")
            .on_event("t/wake")
            .raw_handler(move |_, _| {
                let _ = tx.send(());
                std::future::ready(Outcome::success())
            })
            .unwrap(),
    )
    .unwrap();
    rt.start().await.unwrap();
    // Let the worker find the queue empty and go to sleep on the notification.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rt.send(Event::new("t/wake", json!({}))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("woken by NOTIFY, not by the 60 s poll")
        .unwrap();
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_run_from_being_taken_over() {
    let test_db = support::TestDb::create("heartbeat").await;
    let db = test_db.database();
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let workers: Vec<JobsRuntime> = (0..2)
        .map(|_| {
            let rt = JobsRuntime::with_settings(
                Arc::new(PgQueue::new(db.clone())),
                Default::default(),
                WorkerSettings::default()
                    .with_lease(Duration::from_millis(600))
                    .with_poll_interval(Duration::from_millis(100)),
            );
            let runs = runs.clone();
            rt.register(
                Function::builder("slow")
                    .on_event("t/slow")
                    .raw_handler(move |_, _| {
                        let runs = runs.clone();
                        async move {
                            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            // Four leases long: only heartbeats keep the other worker off it.
                            tokio::time::sleep(Duration::from_millis(2_400)).await;
                            Outcome::success()
                        }
                    })
                    .unwrap(),
            )
            .unwrap();
            rt
        })
        .collect();
    for rt in &workers {
        rt.start().await.unwrap();
    }
    workers[0]
        .send(Event::new("t/slow", json!({})))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let started =
            std::sync::atomic::AtomicU32::load(&runs, std::sync::atomic::Ordering::SeqCst);
        let left = support::count(&db, "SELECT count(*) AS n FROM infra_jobs").await;
        if started > 0 && left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::sync::atomic::AtomicU32::load(&runs, std::sync::atomic::Ordering::SeqCst),
        1,
        "run once, never taken over"
    );
    for rt in &workers {
        rt.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probe_proves_this_process_even_when_others_share_the_queue() {
    use infra_core::{HealthCheck, HealthStatus};
    let test_db = support::TestDb::create("probe").await;
    let db = test_db.database();
    let workers: Vec<JobsRuntime> = (0..3).map(|_| runtime(&db, 8)).collect();
    for rt in &workers {
        rt.start().await.unwrap();
    }
    for round in 0..5 {
        for rt in &workers {
            let report = rt.check().await;
            assert_eq!(
                report.status,
                HealthStatus::Healthy,
                "round {round}: {}",
                report.detail
            );
            assert!(report.detail.contains("probe job ran"), "{}", report.detail);
        }
    }
    let admin = workers[0].admin().unwrap();
    assert!(
        admin
            .dead_letters(&infra_core::JobFilter::all(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    for rt in &workers {
        rt.shutdown().await;
    }
}
