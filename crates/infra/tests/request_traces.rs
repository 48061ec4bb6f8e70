//! The umbrella wires monitoring into the jobs runtime and the router: on the local sink, an
//! ingestion request is a span, the event it enqueues carries the request's trace, and the
//! run continues it — one trace in the JSON lines, parent to child.
#![cfg(all(feature = "http", feature = "jobs", feature = "monitoring"))]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use infra::jobs::{Function, JobContext, Outcome};
use infra::{Env, Event, Infra};
use serde_json::Value;
use tower::ServiceExt;

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingestion_request_and_the_run_it_triggers_are_one_trace() {
    let log =
        std::env::temp_dir().join(format!("infra-request-traces-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let env = Env::from_pairs([
        ("INFRA_JOBS_INGEST_KEYS", "key-1"),
        ("INFRA_MONITORING_LOG_FILE", log.to_str().unwrap()),
        ("SENTRY_TRACES_SAMPLE_RATE", "1.0"),
    ]);
    let infra = Arc::new(Infra::from_env(&env).unwrap());
    assert_eq!(infra.monitoring().backend(), "local");
    infra
        .jobs()
        .register(
            Function::builder("sync-calendar")
                .on_event("calendar/sync.requested")
                .raw_handler(|_: Event, _: JobContext| async { Outcome::success() })
                .unwrap(),
        )
        .unwrap();
    infra.start().await.unwrap();
    let response = infra
        .router()
        .oneshot(
            Request::post("/e/key-1")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    r#"{"name":"calendar/sync.requested","data":{"calendarId":"c1"}}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let run = |all: &[Value]| {
        all.iter()
            .find(|l| {
                l["type"] == "transaction"
                    && l["op"] == "queue.process"
                    && l["name"] == "sync-calendar"
            })
            .cloned()
    };
    let mut all = Vec::new();
    for _ in 0..200 {
        all = lines(&log);
        if run(&all).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    infra.shutdown().await;
    let _ = std::fs::remove_file(&log);

    let request = all
        .iter()
        .find(|l| l["type"] == "transaction" && l["op"] == "http.server")
        .expect("the request's span");
    // The route's template names the span, never the key in the path.
    assert_eq!(request["name"], "POST /e/{event_key}");
    assert_eq!(request["status"], "ok");
    assert_eq!(request["data"]["http.response.status_code"], 200);
    let run = run(&all).expect("the run's span");
    assert_eq!(run["trace_id"], request["trace_id"]);
    assert_eq!(run["parent_span_id"], request["span_id"]);
}
