//! End to end: a request (a Sentry transaction through `request_layers`) sends an event,
//! the job it triggers runs on a real runtime (in-process queue) as a transaction of the
//! same trace, and cron functions check in — all read back from the envelopes the real
//! Sentry client posts to a local stand-in for the DSN's endpoint.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use infra_core::{Env, Event, EventSender, TraceContext};
use infra_jobs::{Function, JobContext, JobsRuntime, MemoryQueue, Outcome, WorkerSettings};
use infra_monitoring::Monitoring;
use serde_json::{Value, json};
use support::{EnvelopeReceiver, items};
use tracing_subscriber::prelude::*;

/// Every item of every envelope received so far, as (type, payload).
fn all_items(receiver: &EnvelopeReceiver) -> Vec<(String, Value)> {
    receiver
        .received()
        .iter()
        .flat_map(|r| items(&r.body))
        .map(|(h, p)| (h["type"].as_str().unwrap_or_default().to_owned(), p))
        .collect()
}

fn transaction<'a>(items: &'a [(String, Value)], op: &str, name: &str) -> Option<&'a Value> {
    items.iter().find_map(|(kind, p)| {
        (kind == "transaction"
            && p["contexts"]["trace"]["op"] == op
            && p["transaction"].as_str().is_some_and(|t| t.contains(name)))
        .then_some(p)
    })
}

fn check_ins<'a>(items: &'a [(String, Value)], slug: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|(kind, p)| kind == "check_in" && p["monitor_slug"] == slug)
        .map(|(_, p)| p)
        .collect()
}

async fn sync(State(jobs): State<JobsRuntime>) -> String {
    jobs.send(Event::new(
        "calendar/sync.requested",
        json!({ "calendarId": "cal-1" }),
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_its_job_and_cron_fires_reach_sentry_as_one_trace_and_check_ins() {
    // The app's tracing goes to Sentry too: the worker's `job` span must nest in the run's
    // transaction, not become one of its own.
    tracing_subscriber::registry()
        .with(infra_monitoring::tracing_layer())
        .init();
    let receiver = EnvelopeReceiver::start().await;
    let env = Env::from_pairs([
        ("SENTRY_DSN", receiver.dsn("publickey123", 42)),
        ("SENTRY_ENVIRONMENT", "staging".into()),
        ("SENTRY_TRACES_SAMPLE_RATE", "1.0".into()),
    ]);
    let monitoring = Monitoring::from_env(&env).unwrap();
    let jobs = JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        Default::default(),
        WorkerSettings::default().with_poll_interval(Duration::from_millis(20)),
    );
    jobs.set_monitor(monitoring.run_monitor());

    let seen: Arc<Mutex<Option<TraceContext>>> = Arc::default();
    jobs.register(
        Function::builder("sync-calendar")
            .on_event("calendar/sync.requested")
            .with_state(seen.clone())
            .raw_handler(
                |event: Event, ctx: JobContext<Arc<Mutex<Option<TraceContext>>>>| async move {
                    *ctx.state().lock().unwrap() = event.trace.clone();
                    Outcome::success()
                },
            )
            .unwrap(),
    )
    .unwrap();
    jobs.register(
        Function::builder("nightly-digest")
            .on_cron("* * * * * *")
            .timeout(Duration::from_secs(150))
            .raw_handler(|_: Event, _: JobContext| async { Outcome::success() })
            .unwrap(),
    )
    .unwrap();
    jobs.register(
        Function::builder("broken-digest")
            .on_cron("* * * * * *")
            .retries(0)
            .raw_handler(|_: Event, _: JobContext| async {
                Outcome::fail("the digest API refused")
            })
            .unwrap(),
    )
    .unwrap();
    jobs.start().await.unwrap();

    let (hub, http, server_errors) = infra_monitoring::request_layers();
    let app = axum::Router::new()
        .route("/api/calendar/sync", post(sync))
        .with_state(jobs.clone())
        .layer(server_errors)
        .layer(http)
        .layer(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/calendar/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Wait (bounded) for everything to arrive; nothing here measures time.
    let mut items = Vec::new();
    for _ in 0..200 {
        monitoring.flush(Duration::from_secs(1));
        items = all_items(&receiver);
        let done = transaction(&items, "http.server", "/api/calendar/sync").is_some()
            && transaction(&items, "queue.process", "sync-calendar").is_some()
            && check_ins(&items, "nightly-digest")
                .iter()
                .any(|c| c["status"] == "ok")
            && check_ins(&items, "broken-digest")
                .iter()
                .any(|c| c["status"] == "error");
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    jobs.shutdown().await;

    let request = transaction(&items, "http.server", "/api/calendar/sync")
        .expect("the request's transaction arrived");
    let run = transaction(&items, "queue.process", "sync-calendar")
        .expect("the job run's transaction arrived");
    let request_trace = &request["contexts"]["trace"];
    let run_trace = &run["contexts"]["trace"];
    assert_eq!(
        run_trace["trace_id"], request_trace["trace_id"],
        "one trace: {run_trace}"
    );
    assert_eq!(
        run_trace["parent_span_id"], request_trace["span_id"],
        "the run's parent is the request that sent its event"
    );
    assert_eq!(run_trace["status"], "ok");
    assert_eq!(
        run_trace["data"]["messaging.destination.name"],
        "sync-calendar"
    );

    assert!(
        run["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s["description"] == "job")),
        "the worker's tracing span is a child of the run: {}",
        run["spans"]
    );
    assert!(
        !items
            .iter()
            .any(|(kind, p)| kind == "transaction" && p["transaction"] == "job"),
        "no second transaction per run"
    );

    // The trace travelled inside the event.
    let carried = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the event carried a trace");
    assert_eq!(json!(carried.trace_id), request_trace["trace_id"]);
    assert_eq!(json!(carried.span_id), request_trace["span_id"]);
    assert_eq!(carried.sampled, Some(true));

    // A cron fire: in progress, then ok with its duration, one check-in id, the monitor
    // upserted with the schedule's minutes and the function's timeout.
    let digest = check_ins(&items, "nightly-digest");
    let ok = digest
        .iter()
        .find(|c| c["status"] == "ok")
        .expect("an ok check-in");
    let opened = digest
        .iter()
        .find(|c| c["status"] == "in_progress" && c["check_in_id"] == ok["check_in_id"])
        .expect("the fire's in-progress check-in came first with the same id");
    assert!(ok["duration"].as_f64().is_some_and(|d| d >= 0.0), "{ok}");
    assert!(
        opened.get("duration").is_none_or(Value::is_null),
        "{opened}"
    );
    for c in [*opened, *ok] {
        assert_eq!(c["environment"], "staging");
        let config = &c["monitor_config"];
        assert_eq!(
            config["schedule"],
            json!({ "type": "crontab", "value": "* * * * *" })
        );
        assert_eq!(config["max_runtime"], 3);
        assert_eq!(config["checkin_margin"], 1);
        assert_eq!(config["timezone"], "UTC");
    }
    let position = |c: &Value| digest.iter().position(|d| *d == c).unwrap();
    assert!(position(opened) < position(ok));

    // A fire that fails for good closes its check-in as an error.
    let broken = check_ins(&items, "broken-digest");
    let error = broken
        .iter()
        .find(|c| c["status"] == "error")
        .expect("an error check-in");
    assert!(error["duration"].as_f64().is_some());
    assert!(
        broken
            .iter()
            .any(|c| c["status"] == "in_progress" && c["check_in_id"] == error["check_in_id"])
    );
}
