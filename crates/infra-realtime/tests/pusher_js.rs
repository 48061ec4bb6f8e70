//! The official pusher-js client (under Node) against the server binary: public, private,
//! presence and encrypted channels, events from the official `pusher` SDK and from our
//! `PusherClient`, member and client events, and reconnection after a server restart.
//!
//! Needs Node and `npm ci` in `tests/compat` (`cargo xtask ci` does it); fails, never skips.
#![cfg(all(feature = "server", feature = "pusher", unix))]

mod server_support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use infra_core::{ChannelName, EventName, Realtime};
use infra_realtime::{PusherClient, PusherConfig};
use serde_json::{Value, json};
use server_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_works_against_the_server() {
    let compat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    assert!(
        compat.join("node_modules/pusher-js").exists(),
        "run `npm ci` in {} first (cargo xtask ci does)",
        compat.display()
    );
    let port = free_port();
    let mut server = Some(ServerProcess::start(port));
    let base = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let api = PusherClient::new(PusherConfig::new(base, APP_ID, KEY, SECRET)).unwrap();

    let mut node = Command::new("node")
        .arg(compat.join("pusher_js.js"))
        .arg(port.to_string())
        .current_dir(&compat)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut stdin = node.stdin.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let result: Value = loop {
        let line = tokio::time::timeout(PATIENCE * 3, rx.recv())
            .await
            .expect("pusher-js reports within the deadline")
            .expect("pusher-js script ended without a result");
        match line.as_str() {
            "STEP trigger" => {
                api.trigger(
                    &[ChannelName::new("private-room").unwrap()],
                    &EventName::new("from-rust").unwrap(),
                    &json!({"by": "PusherClient"}),
                )
                .await
                .unwrap();
            }
            "STEP restart" => {
                let old = server.take().unwrap();
                assert!(
                    tokio::task::spawn_blocking(move || old.terminate())
                        .await
                        .unwrap()
                );
                server = Some(ServerProcess::start(port));
            }
            other => {
                if let Some(json) = other.strip_prefix("RESULT ") {
                    break serde_json::from_str(json).unwrap();
                }
                continue;
            }
        }
        writeln!(stdin, "go").unwrap();
    };
    let status = node.wait().unwrap();
    assert!(status.success(), "{result}");

    assert_eq!(result["from_sdk"], json!({"n": 1}));
    assert_eq!(
        result["from_rust"],
        json!([{"by": "PusherClient"}, {"by": "PusherClient"}])
    );
    assert_eq!(
        (
            result["presence_me"].as_str(),
            result["presence_count"].as_u64()
        ),
        (Some("b"), Some(2))
    );
    assert_eq!(result["member_added"], "b");
    assert_eq!(result["member_removed"], "b");
    assert_eq!(result["client_event"], json!({"typing": true}));
    assert_eq!(result["client_event_user"], "b");
    assert_eq!(result["client_event_echoed"], false);
    assert_eq!(result["decrypted"], json!({"plan": "3pm"}));
    assert_eq!(result["after_restart"], json!({"n": 2}));
    assert_ne!(result["socket_id"], result["reconnected_socket_id"]);
    drop(server);
}
