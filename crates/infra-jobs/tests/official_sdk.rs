//! Compatibility with the official `inngest` npm SDK: an app using it sends events into our
//! runtime by pointing its event API base URL at our ingestion route, and our functions run.
//!
//! Needs Node and `npm ci` in `tests/compat` (`cargo xtask ci` does it); fails, never skips,
//! without.
#![cfg(feature = "serve")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use infra_core::Event;
use infra_jobs::{
    CalendarSyncRequested, Function, IngestConfig, JobContext, JobsRuntime, MemoryQueue, Outcome,
    WorkerSettings, ingest_router,
};
use serde_json::Value;
use tokio::sync::mpsc;

fn compat_dir() -> PathBuf {
    let compat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    assert!(
        compat.join("node_modules/inngest").exists(),
        "run `npm ci` in {} first (cargo xtask ci does)",
        compat.display()
    );
    compat
}

/// Runs a compat script with `args`; returns its JSON output line.
async fn node(script: &'static str, args: Vec<String>) -> Value {
    let compat = compat_dir();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(compat.join(script))
            .args(args)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// What ran: (function, the event's id, a field of its data).
type Ran = (&'static str, Option<String>, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_by_the_official_sdk_run_on_our_runtime() {
    let runtime = JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        Default::default(),
        WorkerSettings::default().with_poll_interval(Duration::from_millis(50)),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<Ran>();
    let sync_tx = tx.clone();
    runtime
        .register(
            Function::typed::<CalendarSyncRequested>("sync-calendar")
                .handler(move |event: CalendarSyncRequested, ctx: JobContext| {
                    let tx = sync_tx.clone();
                    async move {
                        let id = ctx.event().id.clone();
                        tx.send(("sync-calendar", id, event.workspace_id)).unwrap();
                        Outcome::success()
                    }
                })
                .unwrap(),
        )
        .unwrap();
    runtime
        .register(
            Function::builder("send-email")
                .on_event("email/send.requested")
                .raw_handler(move |event: Event, _ctx| {
                    let tx = tx.clone();
                    async move {
                        let to = event.data["to"].as_str().unwrap_or_default().to_owned();
                        tx.send(("send-email", event.id, to)).unwrap();
                        Outcome::success()
                    }
                })
                .unwrap(),
        )
        .unwrap();
    runtime.start().await.unwrap();

    let app = ingest_router(Arc::new(runtime.clone()), IngestConfig::new(["compat-key"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let out = node(
        "inngest_send.js",
        vec![
            format!("http://{addr}/"),
            "compat-key".into(),
            "not-our-key".into(),
        ],
    )
    .await;
    assert_eq!(out["single"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["batch"].as_array().unwrap().len(), 2, "{out}");
    let wrong = out["wrongKeyError"]
        .as_str()
        .expect("a wrong key fails the send");
    assert!(wrong.contains("Event key not found"), "{wrong}");

    let mut ran = Vec::new();
    while ran.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the functions run")
            .unwrap();
        ran.push(next);
    }
    ran.sort();
    assert_eq!(ran[0].0, "send-email");
    assert_eq!(ran[0].2, "a@example.com");
    assert_eq!(
        ran[1..]
            .iter()
            .map(|(f, _, ws)| (*f, ws.as_str()))
            .collect::<Vec<_>>(),
        [("sync-calendar", "w1"), ("sync-calendar", "w2")]
    );
    assert!(
        ran.iter()
            .any(|(_, id, _)| id.as_deref() == Some("dedup-u2")),
        "the SDK's event id reaches the function: {ran:?}"
    );
    // Nothing else ran: the wrong key's event was never enqueued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err());
    runtime.shutdown().await;
}
