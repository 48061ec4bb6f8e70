//! The Inngest-compatible ingestion route in front of the jobs runtime on the in-process
//! queue: replies, status codes, the events functions receive, and nothing enqueued from a
//! rejected request.
#![cfg(feature = "serve")]

use std::sync::Arc;
use std::time::Duration;

use infra_core::{Env, ErrorKind, Event, EventLimits};
use infra_jobs::{
    Function, IngestConfig, JobsRuntime, MemoryQueue, Outcome, WorkerSettings, ingest_router,
};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// The event names the tests send; one recording function runs on all of them.
const NAMES: [&str; 6] = [
    "calendar/sync.requested",
    "email/send.requested",
    "user/signup",
    "a/b",
    "a/ok",
    "a/big",
];

/// The route on a started runtime whose one function hands every event it runs to `rx`, one
/// at a time in enqueue order.
struct Ingest {
    base: String,
    rx: UnboundedReceiver<Event>,
    runtime: JobsRuntime,
}

async fn serve(config: IngestConfig) -> Ingest {
    let runtime = JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        EventLimits::default(),
        WorkerSettings::default()
            .with_concurrency(1)
            .with_poll_interval(Duration::from_millis(50)),
    );
    let (tx, rx) = unbounded_channel();
    let record = NAMES
        .iter()
        .fold(Function::builder("record"), |f, name| f.on_event(*name))
        .with_state(tx)
        .raw_handler(|event: Event, ctx| async move {
            ctx.state().send(event).unwrap();
            Outcome::success()
        })
        .unwrap();
    runtime.register(record).unwrap();
    runtime.start().await.unwrap();
    let app = ingest_router(Arc::new(runtime.clone()), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Ingest {
        base: format!("http://{addr}"),
        rx,
        runtime,
    }
}

impl Ingest {
    /// The next event a function ran on.
    async fn next(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
            .await
            .expect("an event runs in time")
            .expect("the runtime is alive")
    }

    /// Nothing was enqueued: no job waits, runs or is dead, none ran, and none was received.
    async fn assert_nothing_enqueued(&mut self) {
        let stats = self.runtime.stats().await.unwrap();
        let f = stats.function("record").unwrap();
        let q = &f.queue;
        assert_eq!(
            (q.ready, q.scheduled, q.running, q.dead, f.runs.attempts),
            (0, 0, 0, 0, 0),
            "nothing of a rejected request is enqueued"
        );
        assert!(self.rx.try_recv().is_err());
    }
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn accepts_one_event_or_a_batch_and_replies_like_inngest() {
    let mut ingest = serve(IngestConfig::new(["key-a", "key-b"])).await;
    let base = ingest.base.clone();
    let (status, reply) = post(
        &format!("{base}/e/key-a"),
        r#"{"name":"calendar/sync.requested","data":{"userId":"u1"},"id":"dedup-1","v":"1"}"#,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"ids": ["dedup-1"], "status": 200}));
    let event = ingest.next().await;
    assert_eq!(event.name, "calendar/sync.requested");
    assert_eq!(event.id.as_deref(), Some("dedup-1"));
    assert_eq!(event.data["userId"], "u1");

    let batch = json!([
        {"name": "email/send.requested", "data": {"to": "a@example.com"}},
        {"name": "user/signup", "data": {}, "user": {"id": "u2"}, "ts": 1_700_000_000_000i64},
    ]);
    let (status, reply) = post(&format!("{base}/e/key-b"), batch.to_string()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], 200);
    assert_eq!(reply["ids"].as_array().unwrap().len(), 2);
    assert_eq!(ingest.next().await.name, "email/send.requested");
    let second = ingest.next().await;
    assert_eq!(second.user, Some(json!({"id": "u2"})));
    assert_eq!(second.ts, Some(1_700_000_000_000));
}

#[tokio::test]
async fn an_unknown_key_is_401_and_enqueues_nothing() {
    let mut ingest = serve(IngestConfig::new(["key-a"])).await;
    let base = ingest.base.clone();
    for key in ["key-b", "key-", "key-aa", "KEY-A"] {
        let (status, reply) = post(&format!("{base}/e/{key}"), r#"{"name":"a/b","data":{}}"#).await;
        assert_eq!(status, 401, "{key}");
        assert_eq!(reply["status"], 401);
        assert!(reply["error"].as_str().unwrap().contains("key"), "{reply}");
    }
    ingest.assert_nothing_enqueued().await;
}

#[tokio::test]
async fn bad_json_and_invalid_events_are_400_with_the_reason() {
    let mut ingest = serve(IngestConfig::new(["k"])).await;
    let url = format!("{}/e/k", ingest.base);
    let cases = [
        (r#"{"name": "a/b", "data": {"#, "not JSON"),
        ("42", "event object or an array"),
        (r#"{"data": {}}"#, "not an event"),
        (r#"{"name": "  ", "data": {}}"#, "`name` must not be empty"),
        (
            r#"{"name": "a/b", "data": [1, 2]}"#,
            "`data` must be a JSON object",
        ),
        // A valid event first, an invalid one second: the whole request is refused.
        (
            r#"[{"name": "a/ok", "data": {}}, {"name": "", "data": {}}]"#,
            "event 1: `name` must not be empty",
        ),
        (
            r#"[{"name": "a/ok", "data": {}}, "text"]"#,
            "event 1: an event must be",
        ),
    ];
    for (body, reason) in cases {
        let (status, reply) = post(&url, body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["status"], 400);
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains(reason), "{body}: {error}");
    }
    ingest.assert_nothing_enqueued().await;
}

#[tokio::test]
async fn an_oversized_body_is_413_and_enqueues_nothing() {
    let mut config = IngestConfig::new(["k"]);
    config.max_body_bytes = 4096;
    let mut ingest = serve(config).await;
    let base = ingest.base.clone();
    let big = json!([
        {"name": "a/ok", "data": {}},
        {"name": "a/big", "data": {"blob": "x".repeat(8192)}},
    ]);
    let (status, reply) = post(&format!("{base}/e/k"), big.to_string()).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["status"], 413);
    assert!(reply["error"].as_str().unwrap().contains("4096"), "{reply}");
    ingest.assert_nothing_enqueued().await;
    // Just under the limit is fine.
    let (status, _) = post(
        &format!("{base}/e/k"),
        json!({"name": "a/ok", "data": {"blob": "x".repeat(3000)}}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        ingest.next().await.data["blob"].as_str().map(str::len),
        Some(3000)
    );
}

#[tokio::test]
async fn an_empty_batch_is_accepted_and_sends_nothing() {
    let mut ingest = serve(IngestConfig::new(["k"])).await;
    let (status, reply) = post(&format!("{}/e/k", ingest.base), "[]").await;
    assert_eq!((status, reply), (200, json!({"ids": [], "status": 200})));
    ingest.assert_nothing_enqueued().await;
}

#[test]
fn keys_come_from_the_environment_and_never_print() {
    let err = IngestConfig::from_env(&Env::empty()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.variable(), Some("INFRA_JOBS_INGEST_KEYS"));
    let err =
        IngestConfig::from_env(&Env::from_pairs([("INFRA_JOBS_INGEST_KEYS", " , ")])).unwrap_err();
    assert_eq!(err.variable(), Some("INFRA_JOBS_INGEST_KEYS"));
    let config = IngestConfig::from_env(&Env::from_pairs([
        ("INFRA_JOBS_INGEST_KEYS", "sekrit-one, sekrit-two"),
        ("INFRA_JOBS_INGEST_MAX_BODY_BYTES", "2048"),
    ]))
    .unwrap();
    assert_eq!(config.max_body_bytes, 2048);
    let printed = format!("{config:?}");
    assert!(printed.contains("2 key(s)"), "{printed}");
    assert!(!printed.contains("sekrit"), "{printed}");
    let err = IngestConfig::from_env(&Env::from_pairs([
        ("INFRA_JOBS_INGEST_KEYS", "k"),
        ("INFRA_JOBS_INGEST_MAX_BODY_BYTES", "lots"),
    ]))
    .unwrap_err();
    assert_eq!(err.variable(), Some("INFRA_JOBS_INGEST_MAX_BODY_BYTES"));
}

#[tokio::test]
async fn the_runtimes_limits_refuse_a_request_whole() {
    let runtime = JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        EventLimits::default()
            .with_max_event_bytes(200)
            .with_max_batch(3),
        WorkerSettings::default(),
    );
    runtime
        .register(
            Function::builder("record")
                .on_event("a/ok")
                .raw_handler(|_: Event, _| async { Outcome::success() })
                .unwrap(),
        )
        .unwrap();
    // Not started: enqueued jobs stay ready, so the queue shows what was enqueued.
    let app = ingest_router(Arc::new(runtime.clone()), IngestConfig::new(["k"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}/e/k");
    let ready = || async {
        runtime
            .stats()
            .await
            .unwrap()
            .function("record")
            .map(|f| f.queue.ready)
            .unwrap_or(0)
    };

    let oversized = json!([
        {"name": "a/ok", "data": {}},
        {"name": "a/ok", "data": {"blob": "x".repeat(400)}},
    ]);
    let (status, reply) = post(&url, oversized.to_string()).await;
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(error.starts_with("event 1: "), "{error}");
    assert!(error.contains("200"), "names the limit: {error}");

    let too_many = json!([
        {"name": "a/ok", "data": {}}, {"name": "a/ok", "data": {}},
        {"name": "a/ok", "data": {}}, {"name": "a/ok", "data": {}},
    ]);
    let (status, reply) = post(&url, too_many.to_string()).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("limit of 3"),
        "{reply}"
    );
    assert_eq!(
        ready().await,
        0,
        "nothing of a rejected request is enqueued"
    );

    let (status, reply) = post(
        &url,
        r#"[{"name":"a/ok","data":{}},{"name":"a/ok","data":{}}]"#,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(ready().await, 2);
}
