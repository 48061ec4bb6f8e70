//! Compatibility with the official PyPI `pusher` SDK (3.3.4, pinned with its dependencies in
//! `tests/compat/requirements.txt`) against the embedded server: its triggers, user events,
//! channel queries and `terminate_user_connections` — which posts to
//! `/users/{id}/terminate_connections`, without the `/apps/{app_id}` prefix — all succeed,
//! and the authorizations it signs are ours.
//!
//! Needs the virtualenv `tests/compat/.venv` with the pinned packages (`cargo xtask ci`
//! creates it); fails, never skips, without.
#![cfg(feature = "server")]

mod server_support;

use std::path::PathBuf;
use std::process::Command;

use infra_core::ChannelName;
use infra_realtime::signature;
use serde_json::{Value, json};
use server_support::*;

async fn signed_in(addr: std::net::SocketAddr, id: &str) -> Client {
    let mut client = Client::connect(addr).await;
    let user_data = json!({"id": id}).to_string();
    let auth = signature::authenticate_user(KEY, &secret(), &client.socket_id, &user_data).unwrap();
    client
        .send(
            json!({"event": "pusher:signin", "data": {"auth": auth.auth, "user_data": user_data}}),
        )
        .await;
    client.recv_event("pusher:signin_success", None).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pypi_sdk_drives_the_embedded_server() {
    let compat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let python = compat.join(".venv/bin/python");
    assert!(
        python.exists(),
        "create {} first: python3 -m venv .venv && .venv/bin/pip install -r requirements.txt \
         (`cargo xtask ci` does)",
        compat.join(".venv").display()
    );
    let (_server, addr) = start_default().await;
    let mut reader = Client::connect(addr).await;
    reader.subscribe("news").await;
    let mut u1 = signed_in(addr, "u1").await;
    u1.subscribe("#server-to-user-u1").await;
    let mut u2 = signed_in(addr, "u2").await;
    let mut member = Client::connect(addr).await;
    member.subscribe_presence("presence-room", "m1").await;

    let socket_id = reader.socket_id.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(compat.join("pusher_py_sdk.py"))
            .arg(addr.port().to_string())
            .arg(&socket_id)
            .output()
            .expect("the virtualenv's python runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the SDK failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sdk: Value = serde_json::from_str(stdout.trim()).unwrap();

    // Its calls reached the server and were answered as Pusher answers them.
    assert_eq!(sdk["trigger"], json!({}));
    assert_eq!(sdk["send_to_user"], json!({}));
    assert_eq!(
        sdk["channels_info"],
        json!({"channels": {"presence-room": {"user_count": 1}}})
    );
    assert_eq!(sdk["channel_info"]["occupied"], true);
    assert_eq!(sdk["channel_info"]["subscription_count"], 1);
    assert_eq!(sdk["users_info"], json!({"users": [{"id": "m1"}]}));
    assert_eq!(sdk["terminate"], json!({}));
    let event = reader.recv_event("py.event", Some("news")).await;
    assert_eq!(data_of(&event), json!({"from": "python"}));
    let private = u1
        .recv_event("py.private", Some("#server-to-user-u1"))
        .await;
    assert_eq!(data_of(&private), json!({"for": "u1"}));
    assert_eq!(
        u2.closed().await.0,
        4009,
        "terminate closed u2's connection"
    );

    // The authorizations it signs are the ones we sign.
    let ours = |channel: &str, data: Option<&str>| {
        let auth = signature::authorize_channel(
            KEY,
            &secret(),
            &reader.socket_id,
            &ChannelName::new(channel).unwrap(),
            data,
        )
        .unwrap();
        serde_json::to_value(auth).unwrap()
    };
    assert_eq!(sdk["private_auth"], ours("private-room", None));
    let presence_data = sdk["presence_auth"]["channel_data"].as_str().unwrap();
    assert_eq!(
        sdk["presence_auth"],
        ours("presence-room", Some(presence_data))
    );
    let user_data = sdk["user_auth"]["user_data"].as_str().unwrap();
    let user = signature::authenticate_user(KEY, &secret(), &reader.socket_id, user_data).unwrap();
    assert_eq!(sdk["user_auth"], serde_json::to_value(user).unwrap());
}
