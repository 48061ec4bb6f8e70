//! The `infra-realtime-server` binary: logs its address, serves WebSocket and HTTP API on one
//! port, and on SIGTERM closes every connection with a close frame before exiting.
#![cfg(all(feature = "server", feature = "pusher", unix))]

mod server_support;

use infra_core::{ChannelName, EventName, Realtime};
use infra_realtime::{PusherClient, PusherConfig};
use serde_json::json;
use server_support::*;

#[tokio::test]
async fn serves_both_protocols_and_shuts_down_gracefully() {
    let server = ServerProcess::start(free_port());
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&server.addr.to_string())),
        "the log names the address"
    );
    let mut client = Client::connect(server.addr).await;
    client.subscribe("news").await;
    let base = url::Url::parse(&format!("http://{}", server.addr)).unwrap();
    let api = PusherClient::new(PusherConfig::new(base, APP_ID, KEY, SECRET)).unwrap();
    api.trigger(
        &[ChannelName::new("news").unwrap()],
        &EventName::new("hello").unwrap(),
        &json!({"n": 1}),
    )
    .await
    .unwrap();
    assert_eq!(
        client.recv_event("hello", Some("news")).await["data"],
        "{\"n\":1}"
    );

    let exited = tokio::task::spawn_blocking(move || server.terminate());
    let (code, _) = client.closed().await;
    assert_eq!(code, 4200, "clients are told to reconnect");
    assert!(exited.await.unwrap(), "exit status 0");
}
