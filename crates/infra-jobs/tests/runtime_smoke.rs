//! The runtime's public API on the in-process queue: typed functions run, outcomes settle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use infra_core::{Event, EventSender, HealthCheck, HealthStatus, JobFilter, TypedEvent};
use infra_jobs::{
    Backoff, Function, JobContext, JobsRuntime, MemoryQueue, Outcome, WorkerSettings,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

/// A typed event with the TypeScript module's camelCase keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportRequested {
    user_id: String,
    report_id: String,
}

impl TypedEvent for ReportRequested {
    const NAME: &'static str = "reports/report.requested";
}

fn runtime() -> JobsRuntime {
    JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        Default::default(),
        WorkerSettings::default().with_poll_interval(Duration::from_millis(50)),
    )
}

#[tokio::test]
async fn typed_function_receives_its_event_and_state() {
    let runtime = runtime();
    let (tx, mut rx) = mpsc::unbounded_channel();
    runtime
        .register(
            Function::typed::<ReportRequested>("build-report")
                .with_state(tx)
                .handler(
                    |event: ReportRequested, ctx: JobContext<mpsc::UnboundedSender<_>>| async move {
                        ctx.state().send((event, ctx.attempt())).unwrap();
                        Outcome::success()
                    },
                )
                .unwrap(),
        )
        .unwrap();
    runtime.start().await.unwrap();
    let requested = ReportRequested {
        user_id: "u1".into(),
        report_id: "r1".into(),
    };
    let event = requested.to_event().unwrap();
    assert_eq!(event.data, json!({ "userId": "u1", "reportId": "r1" }));
    runtime.send(event).await.unwrap();
    let (event, attempt) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event, requested);
    assert_eq!(attempt, 1);
    runtime
        .send(Event::new(ReportRequested::NAME, json!({ "userId": "u2" })))
        .await
        .unwrap();
    runtime.send(requested.to_event().unwrap()).await.unwrap();
    let (event, _) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event, requested,
        "an event that does not decode never reaches the handler"
    );
    let admin = runtime.admin().unwrap();
    let dead = wait_for(|| async {
        let d = admin
            .dead_letters(&JobFilter::function("build-report"), 10)
            .await
            .unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(
        dead.len(),
        1,
        "the undecodable event fails for good at once"
    );
    assert_eq!(dead[0].attempts, 1);
    assert!(dead[0].error.contains("reportId"), "{}", dead[0].error);
    runtime.shutdown().await;
}

#[tokio::test]
async fn invoke_runs_one_attempt_and_reports_the_outcome() {
    let runtime = runtime();
    runtime
        .register(
            Function::builder("flaky")
                .on_event("a/b")
                .raw_handler(|event: Event, ctx: JobContext| async move {
                    if ctx.attempt() < 2 {
                        Outcome::retry(format!("attempt {}", ctx.attempt()))
                    } else {
                        Outcome::Success(event.data)
                    }
                })
                .unwrap(),
        )
        .unwrap();
    let out = runtime
        .invoke("flaky", Event::new("a/b", json!({ "x": 1 })), 1, "run-1")
        .await
        .unwrap();
    assert_eq!(out, Outcome::retry("attempt 1"));
    let out = runtime
        .invoke("flaky", Event::new("a/b", json!({ "x": 1 })), 2, "run-1")
        .await
        .unwrap();
    assert_eq!(out, Outcome::Success(json!({ "x": 1 })));
    let err = runtime
        .invoke("missing", Event::new("a/b", json!({})), 1, "r")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), infra_core::ErrorKind::NotFound);
}

#[tokio::test]
async fn retries_then_dead_letter_then_replay() {
    let runtime = runtime();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    runtime
        .register(
            Function::builder("always-fails")
                .on_event("x/fail")
                .retries(2)
                .backoff(Backoff {
                    base: Duration::from_millis(10),
                    max: Duration::from_millis(50),
                    jitter: 0.5,
                })
                .raw_handler(move |_, _| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    async { Outcome::retry("nope") }
                })
                .unwrap(),
        )
        .unwrap();
    runtime.start().await.unwrap();
    runtime
        .send(Event::new("x/fail", json!({ "n": 1 })))
        .await
        .unwrap();
    let admin = runtime.admin().unwrap();
    let dead = wait_for(|| async {
        let d = admin
            .dead_letters(&JobFilter::function("always-fails"), 10)
            .await
            .unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].error, "nope");
    let stats = runtime.stats().await.unwrap();
    let f = stats.function("always-fails").unwrap();
    assert_eq!(f.queue.dead, 1);
    assert_eq!(f.runs.attempts, 3);
    assert_eq!(f.runs.dead_lettered, 1);

    admin.replay(dead[0].id).await.unwrap();
    wait_for(|| async { (calls.load(Ordering::SeqCst) == 6).then_some(()) }).await;
    let report = runtime.check().await;
    assert_eq!(report.status, HealthStatus::Degraded, "{}", report.detail);
    runtime.shutdown().await;
}

#[tokio::test]
async fn health_probe_runs_a_job() {
    let runtime = runtime();
    let report = runtime.check().await;
    assert_eq!(
        report.status,
        HealthStatus::Degraded,
        "in memory without workers nothing runs"
    );
    assert!(report.detail.contains("not started"), "{}", report.detail);
    runtime.start().await.unwrap();
    let report = runtime.check().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert!(report.detail.contains("probe job ran"));
    runtime.shutdown().await;
}

async fn wait_for<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_rejected_batch_enqueues_nothing() {
    let limits = infra_core::EventLimits::default()
        .with_max_event_bytes(1024)
        .with_max_batch(3);
    let runtime = JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        limits,
        WorkerSettings::default(),
    );
    runtime
        .register(
            Function::builder("counted")
                .on_event("a/b")
                .raw_handler(|_, _| async {})
                .unwrap(),
        )
        .unwrap();
    let ok = || Event::new("a/b", json!({ "small": true }));
    let big = Event::new("a/b", json!({ "blob": "x".repeat(2048) }));
    let err = runtime.send_many(vec![ok(), big]).await.unwrap_err();
    assert_eq!(err.kind(), infra_core::ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("data"));
    assert_eq!(err.context("limit"), Some("1024"));
    assert_eq!(err.context("index"), Some("1"));
    let err = runtime
        .send_many(vec![ok(), ok(), ok(), ok()])
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("events"));
    let err = runtime
        .send_many(vec![ok(), Event::new("a/b", json!([1, 2]))])
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("data"));
    let stats = runtime.stats().await.unwrap();
    assert_eq!(
        stats.function("counted").unwrap().queue.ready,
        0,
        "nothing enqueued"
    );
    runtime.send_many(vec![ok(), ok()]).await.unwrap();
    let stats = runtime.stats().await.unwrap();
    assert_eq!(stats.function("counted").unwrap().queue.ready, 2);
}
