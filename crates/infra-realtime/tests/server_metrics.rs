//! The standalone `infra-realtime-server` with `INFRA_METRICS_ADDR`: it serves `GET /metrics`
//! on its own, with the connections, subscriptions by channel kind, presence members, frames
//! and client events of real WebSocket clients; the exposition passes `promtool check
//! metrics` (Debian's `prometheus` package; missing, the test fails). A bad address stops
//! the binary with an error naming the variable.

mod server_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use server_support::{Client, PATIENCE, ServerProcess, free_port};

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_server_serves_its_metrics() {
    let metrics_port = free_port();
    let server = ServerProcess::start_with(
        free_port(),
        &[
            ("INFRA_METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
            ("INFRA_METRICS_INTERVAL", "100ms".to_owned()),
        ],
    );
    let mut watcher = Client::connect(server.addr).await;
    watcher.subscribe("public-news").await;
    let mut member = Client::connect(server.addr).await;
    member.subscribe_presence("presence-room", "u1").await;
    let mut sender = Client::connect(server.addr).await;
    sender.subscribe_presence("presence-room", "u2").await;
    sender
        .send(json!({"event": "client-typing", "channel": "presence-room", "data": "{}"}))
        .await;
    member
        .recv_event("client-typing", Some("presence-room"))
        .await;

    let http = reqwest::Client::new();
    let started = Instant::now();
    let exposition = loop {
        let body = http
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
            .expect("the metrics listener answers")
            .text()
            .await
            .unwrap();
        let sampled = sample(&body, "infra_realtime_connections") == Some(3.0)
            && sample(&body, "infra_realtime_presence_members") == Some(2.0);
        if sampled {
            break body;
        }
        assert!(started.elapsed() < PATIENCE, "never sampled:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(&exposition, "infra_realtime_subscriptions{kind=\"public\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &exposition,
            "infra_realtime_subscriptions{kind=\"presence\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&exposition, "infra_realtime_channels{kind=\"presence\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&exposition, "infra_realtime_client_events_total"),
        Some(1.0)
    );
    assert!(
        sample(
            &exposition,
            "infra_realtime_messages_total{direction=\"in\"}"
        )
        .is_some_and(|n| n >= 4.0),
        "three subscriptions and a client event came in:\n{exposition}"
    );
    assert!(exposition.contains("# TYPE process_open_fds gauge"));

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool cannot be run ({e}): install Debian's `prometheus` package (.ci/run does)"
            )
        });
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics refused it:\n{}{}\n{exposition}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(server.terminate(), "the server exits cleanly");
}

#[test]
fn a_bad_metrics_address_stops_the_server_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_infra-realtime-server"))
        .env_clear()
        .env("PUSHER_APP_ID", server_support::APP_ID)
        .env("PUSHER_KEY", server_support::KEY)
        .env("PUSHER_SECRET", server_support::SECRET)
        .env("INFRA_REALTIME_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("INFRA_METRICS_ADDR", "localhost")
        .output()
        .expect("the server binary runs");
    assert!(!out.status.success(), "a bad INFRA_METRICS_ADDR is refused");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("INFRA_METRICS_ADDR"), "{said}");
}
