//! Hostile clients that subscribe and stop reading: the server must not hold their frames
//! without bound nor keep them subscribed. A queue past its bytes, or a write that cannot
//! finish within the write timeout, disconnects the client with 4100 (back off, then
//! reconnect); the client learns it from the close frame once it reads again.
#![cfg(feature = "server")]

mod server_support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::StreamExt;
use infra_core::{ChannelName, EventName, Realtime};
use infra_realtime::server::{AppLimits, RealtimeServer, ServerConfig};
use serde_json::json;
use server_support::*;
use tokio_tungstenite::tungstenite::Message;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A subscriber of `firehose` whose socket takes 4 KiB at a time and which reads nothing
/// after subscribing, plus a bystander on the same channel that reads every event (and stays
/// connected: the task hands it back).
async fn stalled_and_bystander(
    addr: std::net::SocketAddr,
) -> (Client, tokio::task::JoinHandle<(usize, Client)>) {
    let mut stalled = Client::connect_from(addr, LOOPBACK, Some(4096)).await;
    stalled.subscribe("firehose").await;
    let mut bystander = Client::connect(addr).await;
    bystander.subscribe("firehose").await;
    let reading = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 600 {
            if bystander.recv().await["event"] == "tick" {
                seen += 1;
            }
        }
        (seen, bystander)
    });
    (stalled, reading)
}

/// 600 events of 9 KB on `firehose`, one a millisecond (as from an app, not in one burst):
/// 5.4 MB towards a client that reads none of it.
async fn flood(server: &RealtimeServer) {
    let payload = json!("z".repeat(9 * 1024));
    let channel = [ChannelName::new("firehose").unwrap()];
    let tick = EventName::new("tick").unwrap();
    for _ in 0..600 {
        server.trigger(&channel, &tick, &payload).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits (up to three times the usual patience: the write timeout may have to run out
/// first) until only the bystander is connected.
async fn until_only_the_bystander_is_left(server: &RealtimeServer) {
    let until = tokio::time::Instant::now() + PATIENCE * 3;
    while server.connection_count() != 1 {
        assert!(
            tokio::time::Instant::now() < until,
            "the subscriber that stopped reading is still connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads what the server sent before giving up on the client; returns the close code.
async fn close_code_after_reading_again(stalled: &mut Client) -> Option<u16> {
    loop {
        match tokio::time::timeout(PATIENCE, stalled.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code.into()),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => panic!("the connection neither closed nor ended"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_disconnected_with_4100() {
    // Default limits and write timeout: what the client met.
    let (server, addr) = start_default().await;
    let (mut stalled, reading) = stalled_and_bystander(addr).await;
    flood(&server).await;
    let (seen, _bystander) = tokio::time::timeout(PATIENCE * 3, reading)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, 600, "the bystander got every event");
    until_only_the_bystander_is_left(&server).await;
    assert_eq!(
        server.channels(),
        vec!["firehose"],
        "the bystander is still there"
    );
    assert_eq!(
        close_code_after_reading_again(&mut stalled).await,
        Some(4100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_finish_within_the_write_timeout_disconnects() {
    // A queue roomy enough that only the write timeout can end the connection.
    let mut limits = AppLimits::default();
    limits.max_queued_bytes = 64 * 1024 * 1024;
    limits.send_buffer_frames = 10_000;
    let config = ServerConfig::new(vec![app().with_limits(limits)])
        .with_write_timeout(Duration::from_secs(3));
    let (server, addr) = start(config).await;
    let (mut stalled, reading) = stalled_and_bystander(addr).await;
    flood(&server).await;
    let (_, _bystander) = tokio::time::timeout(PATIENCE * 3, reading)
        .await
        .unwrap()
        .unwrap();
    until_only_the_bystander_is_left(&server).await;
    assert_eq!(
        close_code_after_reading_again(&mut stalled).await,
        Some(4100)
    );
}
