//! Hostile clients against the embedded server's subscriptions and connections: one socket
//! subscribing without end, subscribes faster than any pusher-js app, one address opening
//! connection after connection. Each limit answers with the protocol's refusal, never a
//! silent drop, and what a flooding socket held is gone once it leaves.
#![cfg(feature = "server")]

mod server_support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use infra_realtime::server::{AppLimits, ServerConfig};
use serde_json::{Value, json};
use server_support::*;

fn limits(edit: impl FnOnce(&mut AppLimits)) -> ServerConfig {
    let mut limits = AppLimits::default();
    edit(&mut limits);
    ServerConfig::new(vec![app().with_limits(limits)])
}

/// Sends every frame without waiting, then a ping; returns the frames answered before the pong.
async fn send_all_then_collect(client: &mut Client, frames: Vec<Value>) -> Vec<Value> {
    for frame in frames {
        client.send(frame).await;
    }
    client
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    let mut answers = Vec::new();
    loop {
        let frame = client.recv().await;
        if frame["event"] == "pusher:pong" {
            return answers;
        }
        answers.push(frame);
    }
}

fn subscribe_frame(channel: &str) -> Value {
    json!({"event": "pusher:subscribe", "data": {"channel": channel}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_holds_at_most_its_channel_limit_and_leaves_nothing_behind() {
    let (server, addr) = start(limits(|l| l.max_channels_per_connection = 50)).await;
    let mut flooder = Client::connect(addr).await;
    let frames = (0..200)
        .map(|i| subscribe_frame(&format!("flood-{i}")))
        .collect();
    let answers = send_all_then_collect(&mut flooder, frames).await;
    // Every subscribe is answered: 50 successes, then refusals naming the limit.
    assert_eq!(answers.len(), 200, "no subscribe goes unanswered");
    let succeeded = answers
        .iter()
        .filter(|f| f["event"] == "pusher_internal:subscription_succeeded")
        .count();
    assert_eq!(succeeded, 50);
    let refusal = answers
        .iter()
        .find(|f| f["event"] == "pusher:subscription_error")
        .expect("a refusal");
    assert_eq!(refusal["channel"], "flood-50");
    assert_eq!(data_of(refusal)["status"], 403);
    assert!(
        data_of(refusal)["error"]
            .as_str()
            .unwrap()
            .contains("50 channels"),
        "{refusal}"
    );
    assert_eq!(server.state_counts().channels, 50);

    // Leaving a channel makes room for another.
    flooder
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "flood-0"}}))
        .await;
    assert_eq!(
        flooder.subscribe("flood-new").await["event"],
        "pusher_internal:subscription_succeeded"
    );

    // Another connection has its own allowance.
    let mut other = Client::connect(addr).await;
    assert_eq!(
        other.subscribe("flood-1").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    drop(other);
    drop(flooder);
    eventually("the flooder's channels are gone", || {
        let counts = server.state_counts();
        (counts.sockets, counts.channels) == (0, 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribes_beyond_the_rate_are_refused_with_429_not_dropped() {
    let config = limits(|l| {
        l.max_subscribes_per_second = 20;
        l.max_channels_per_connection = 10_000;
    });
    let (server, addr) = start(config).await;
    let mut flooder = Client::connect(addr).await;
    // Subscribe and leave 300 channels as fast as the socket takes them: far beyond 20 a
    // second unless the machine needs 15 s for 600 frames.
    let mut frames = Vec::new();
    for i in 0..300 {
        let channel = format!("churn-{i}");
        frames.push(subscribe_frame(&channel));
        frames.push(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}));
    }
    let answers = send_all_then_collect(&mut flooder, frames).await;
    assert_eq!(answers.len(), 300, "every subscribe is answered");
    let limited: Vec<&Value> = answers
        .iter()
        .filter(|f| f["event"] == "pusher:subscription_error")
        .collect();
    assert!(
        !limited.is_empty(),
        "300 subscribes at once exceed 20 a second"
    );
    for refusal in &limited {
        assert_eq!(data_of(refusal)["status"], 429, "{refusal}");
    }
    // The connection stays, and a second later it may subscribe again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        flooder.subscribe("after-the-burst").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(server.channels(), vec!["after-the-burst"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_at_most_its_connections_then_4100() {
    let (server, addr) = start_with_peer_addresses(limits(|l| l.max_connections_per_ip = 3)).await;
    let home = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::connect_from(addr, home, None).await);
    }
    let path = format!("/app/{KEY}?protocol=7&client=js&version=8.4.0");
    let mut fourth = Client {
        ws: connect_from(addr, &path, home, None).await,
        socket_id: String::new(),
        activity_timeout: 0,
    };
    let (code, frames) = fourth.closed().await;
    assert_eq!(code, 4100);
    assert_eq!(frames[0]["event"], "pusher:error");
    assert_eq!(data_of(&frames[0])["code"], 4100);
    assert!(
        data_of(&frames[0])["message"]
            .as_str()
            .unwrap()
            .contains("3 connections from this address"),
        "{}",
        frames[0]
    );

    // Another address is not held back by this one's connections.
    let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut neighbour = Client::connect_from(addr, elsewhere, None).await;
    assert_eq!(
        neighbour.subscribe("open").await["event"],
        "pusher_internal:subscription_succeeded"
    );

    // A closed connection gives its place back.
    drop(held.pop());
    eventually("a place is free", || server.connection_count() == 3).await;
    let mut again = Client::connect_from(addr, home, None).await;
    assert_eq!(
        again.subscribe("open").await["event"],
        "pusher_internal:subscription_succeeded"
    );
}
