//! A subscribe flood that leaves webhooks waiting: the webhook backlog stays bounded, what
//! does not fit is dropped and counted (in `state_counts` and the health detail), and the
//! server keeps serving.
#![cfg(feature = "server")]

mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use infra_core::HealthCheck;
use infra_realtime::server::ServerConfig;
use serde_json::json;
use server_support::*;

/// Events the webhook backlog holds at most (docs/realtime-server.md).
const BACKLOG: usize = 10_000;

/// A receiver that answers every POST at once and counts the events.
async fn counting_receiver() -> (url::Url, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let hooks = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let events = body["events"].as_array().map_or(0, Vec::len);
                counter.fetch_add(events, Ordering::SeqCst);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/hooks", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, hooks).await.unwrap() });
    (url, received)
}

/// Subscribes to 1,000 channels of its own, a few hundred at a time, reading the answers.
async fn occupy(client: &mut Client, owner: usize) {
    for chunk in (0..1_000).collect::<Vec<_>>().chunks(250) {
        for i in chunk {
            let channel = format!("c-{owner}-{i}");
            client
                .send(json!({"event": "pusher:subscribe", "data": {"channel": channel}}))
                .await;
        }
        client
            .send(json!({"event": "pusher:ping", "data": {}}))
            .await;
        client.recv_event("pusher:pong", None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_backlog_is_bounded_and_drops_are_counted() {
    const SOCKETS: usize = 15;
    const CHANNELS: usize = SOCKETS * 1_000;
    let (hooks, received) = counting_receiver().await;
    // Leaves wait a minute before they are due: they pile up behind the receiver.
    let config = ServerConfig::new(vec![app().with_webhook_url(hooks)])
        .with_leave_delay(Duration::from_secs(60));
    let (server, addr) = start(config).await;

    let mut flooders = Vec::new();
    for owner in 0..SOCKETS {
        let mut client = Client::connect(addr).await;
        occupy(&mut client, owner).await;
        flooders.push(client);
    }
    assert_eq!(server.state_counts().channels, CHANNELS);
    // Every `channel_occupied` is delivered or counted as dropped.
    eventually("the arrivals are delivered", || {
        let counts = server.state_counts();
        counts.webhooks_queued == 0
            && received.load(Ordering::SeqCst) + counts.webhooks_dropped as usize == CHANNELS
    })
    .await;
    let dropped_before = server.state_counts().webhooks_dropped as usize;

    // The sockets leave one after the other, each adding 1,000 `channel_vacated` that wait a
    // minute: the backlog keeps at most its bound and counts the rest.
    for left in 1..=SOCKETS {
        drop(flooders.pop());
        // Events still on their way to the worker count as queued until it takes them (and
        // drops what does not fit): wait for that too, so the bound is checked on the backlog
        // and not on the hand-over queue of a busy machine. A backlog past its bound never
        // gets there, and the wait fails.
        eventually("every leave so far is waiting or counted", || {
            let counts = server.state_counts();
            counts.channels == CHANNELS - left * 1_000
                && counts.webhooks_queued + counts.webhooks_dropped as usize - dropped_before
                    == left * 1_000
                && counts.webhooks_queued <= BACKLOG
        })
        .await;
        let queued = server.state_counts().webhooks_queued;
        assert!(
            queued <= BACKLOG,
            "{queued} events wait, more than the backlog's {BACKLOG}"
        );
    }
    let counts = server.state_counts();
    assert_eq!(
        counts.webhooks_dropped as usize - dropped_before,
        CHANNELS - BACKLOG
    );
    let probe = server.probe().await.unwrap();
    assert!(
        probe.detail.contains("webhook events dropped"),
        "the health detail reports the drops: {}",
        probe.detail
    );

    // The server still answers.
    let mut late = Client::connect(addr).await;
    assert_eq!(
        late.subscribe("after").await["event"],
        "pusher_internal:subscription_succeeded"
    );
}
