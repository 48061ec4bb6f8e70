//! Webhook filters, checked by a receiver that verifies every delivery with the official
//! `pusher` npm SDK's `webhook()`: an app that wants only some kinds of webhooks, for some
//! channel prefixes, gets exactly those; a receiver that keeps refusing makes the server retry
//! and then give the batch up, counting its events as dropped.
//!
//! Needs Node and `npm ci` in `tests/compat` (`cargo xtask ci` does it); fails, never skips.
#![cfg(all(feature = "server", unix))]

mod server_support;

use std::time::Duration;

use infra_realtime::server::{ServerConfig, WebhookFilter, WebhookKind};
use serde_json::{Value, json};
use server_support::webhook_receiver::Receiver;
use server_support::*;

fn described(event: &Value) -> String {
    format!(
        "{}:{}",
        event["name"].as_str().unwrap(),
        event["channel"].as_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_receives_only_the_filtered_kinds_and_channels() {
    let mut receiver = Receiver::start().await;
    let filter = WebhookFilter::kinds([
        WebhookKind::Presence,
        WebhookKind::ClientEvents,
        WebhookKind::CacheMiss,
    ])
    .with_channel_prefixes(["presence-room", "cache-"]);
    let app = app()
        .with_webhook_url(receiver.url("/hooks"))
        .with_webhook_filter(filter);
    // No leave delay: the leave is due at once, so everything arrives in the order it happened.
    let config = ServerConfig::new(vec![app]).with_leave_delay(Duration::ZERO);
    let (_server, addr) = start(config).await;

    let mut a = Client::connect(addr).await;
    a.subscribe_presence("presence-room", "u1").await; // member_added sent, channel_occupied not
    a.subscribe("news").await; // channel_occupied: not a wanted kind
    a.subscribe_presence("presence-lobby", "u1").await; // not a wanted prefix
    for channel in ["presence-room", "presence-lobby"] {
        a.send(json!({"event": "client-hi", "channel": channel, "data": {"x": 1}}))
            .await;
    }
    a.subscribe("cache-x").await; // cache_miss sent
    a.subscribe_private("private-cache-y").await; // cache_miss, but not a wanted prefix
    a.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}))
        .await;
    // The last event: once it arrived, everything before it did.
    a.subscribe_presence("presence-room-end", "u2").await;

    let mut got = Vec::new();
    while !got.contains(&"member_added:presence-room-end".to_owned()) {
        let line = receiver.line().await;
        let events = line
            .strip_prefix("EVENTS ")
            .unwrap_or_else(|| panic!("a valid delivery, got {line}"));
        let events: Vec<Value> = serde_json::from_str(events).unwrap();
        for event in &events {
            if event["name"] == "client_event" {
                assert_eq!(event["event"], "client-hi");
                assert_eq!(event["user_id"], "u1");
            }
        }
        got.extend(events.iter().map(described));
    }
    assert_eq!(
        got,
        [
            "member_added:presence-room",
            "client_event:presence-room",
            "cache_miss:cache-x",
            "member_removed:presence-room",
            "member_added:presence-room-end",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_receiver_keeps_refusing_is_retried_then_dropped_and_counted() {
    let mut receiver = Receiver::start().await;
    let app = app().with_webhook_url(receiver.url("/refuse"));
    let config = ServerConfig::new(vec![app]).with_webhook_retry_for(Duration::from_secs(1));
    let (server, addr) = start(config).await;

    let mut a = Client::connect(addr).await;
    a.subscribe("news").await; // channel_occupied, refused every time
    assert_eq!(receiver.line().await, "REFUSED");
    assert_eq!(
        receiver.line().await,
        "REFUSED",
        "the refused batch is retried"
    );
    eventually("the given-up event is counted", || {
        server.state_counts().webhooks_dropped == 1
    })
    .await;
    assert_eq!(server.state_counts().webhooks_queued, 0);
}
