//! Compatibility with the official `inngest` npm SDK: an app using it sends events into our
//! runtime by pointing its event API base URL at our ingestion route.
//!
//! Needs Node and `npm ci` in `tests/compat` (`cargo xtask ci` does it); fails, never skips,
//! without.
#![cfg(feature = "serve")]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use infra_jobs::{IngestConfig, LocalEventBus, ingest_router};
use serde_json::Value;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_sends_events_through_the_ingestion_route() {
    let bus = Arc::new(LocalEventBus::default());
    let mut rx = bus.subscribe();
    let app = ingest_router(bus, IngestConfig::new(["compat-key"]));
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
    assert_eq!(out["batch"][1], "dedup-u2", "{out}");
    let wrong = out["wrongKeyError"]
        .as_str()
        .expect("a wrong key fails the send");
    assert!(wrong.contains("Event key not found"), "{wrong}");

    let first = rx.recv().await.unwrap();
    assert_eq!(first.name, "calendar/sync.requested");
    assert_eq!(first.data["userId"], "u1");
    assert_eq!(first.data["workspaceId"], "w1");
    assert!(first.ts.unwrap() > 1_600_000_000_000);
    assert_eq!(first.id.as_deref(), out["single"][0].as_str());
    assert_eq!(rx.recv().await.unwrap().name, "email/send.requested");
    let third = rx.recv().await.unwrap();
    assert_eq!(third.id.as_deref(), Some("dedup-u2"));
    assert!(
        rx.try_recv().is_err(),
        "the wrong key's event was not enqueued"
    );
}
