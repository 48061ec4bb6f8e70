//! The embedded server's WebSocket protocol, driven by a plain WebSocket client.
#![cfg(feature = "server")]

mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::SinkExt;
use infra_core::{ChannelName, EventName, Realtime};
use infra_realtime::server::{AppLimits, ServerConfig};
use infra_realtime::signature;
use serde_json::json;
use server_support::*;
use tokio_tungstenite::tungstenite::Message;

fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

fn ev(name: &str) -> EventName {
    EventName::new(name).unwrap()
}

#[tokio::test]
async fn protocol_versions_and_unknown_apps() {
    let (_server, addr) = start_default().await;
    for version in [5, 6, 7] {
        let client = Client::connect_with(addr, KEY, version).await;
        assert!(client.socket_id.contains('.'));
        assert_eq!(client.activity_timeout, 120);
    }
    for (query, code) in [
        (format!("/app/{KEY}?protocol=4"), 4007),
        (format!("/app/{KEY}?protocol=8"), 4007),
        (format!("/app/{KEY}?protocol=seven"), 4006),
        (format!("/app/{KEY}"), 4008),
        ("/app/nope?protocol=7".to_owned(), 4001),
    ] {
        let mut client = Client {
            ws: raw_connect(addr, &query).await,
            socket_id: String::new(),
            activity_timeout: 0,
        };
        let (closed_with, frames) = client.closed().await;
        assert_eq!(closed_with, code, "{query}");
        assert_eq!(frames[0]["event"], "pusher:error");
        assert_eq!(data_of(&frames[0])["code"], code, "{query}");
    }
}

#[tokio::test]
async fn ping_pong_both_ways_and_the_pong_deadline() {
    let config = ServerConfig::new(vec![app()])
        .with_timeouts(Duration::from_secs(1), Duration::from_millis(500));
    let (_server, addr) = start(config).await;
    let mut client = Client::connect(addr).await;
    assert_eq!(client.activity_timeout, 1);
    client
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    assert_eq!(client.recv().await["event"], "pusher:pong");
    // The server pings after a silent activity timeout; answering keeps the connection.
    assert_eq!(client.recv().await["event"], "pusher:ping");
    client
        .send(json!({"event": "pusher:pong", "data": {}}))
        .await;
    assert_eq!(client.recv().await["event"], "pusher:ping");
    // Not answering closes it with 4201.
    let (code, _) = client.closed().await;
    assert_eq!(code, 4201);
}

#[tokio::test]
async fn public_private_and_encrypted_subscriptions_verify_signatures() {
    let (server, addr) = start_default().await;
    let mut client = Client::connect(addr).await;
    let ok = client.subscribe("news").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");

    let refused = client
        .subscribe_with(
            json!({"channel": "private-a", "auth": format!("{KEY}:{}", "00".repeat(32))}),
        )
        .await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(data_of(&refused)["status"], 401);
    let no_auth = client.subscribe("private-a").await;
    assert_eq!(no_auth["event"], "pusher:subscription_error");
    // A signature for another socket does not pass.
    let stolen =
        signature::authorize_channel(KEY, &secret(), "1.1", &ch("private-a"), None).unwrap();
    let refused = client
        .subscribe_with(json!({"channel": "private-a", "auth": stolen.auth}))
        .await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(
        client.subscribe_private("private-a").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        client.subscribe_private("private-encrypted-a").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let bad_name = client.subscribe("bad channel").await;
    assert_eq!(data_of(&bad_name)["status"], 400);
    assert_eq!(
        server.channels(),
        vec!["news", "private-a", "private-encrypted-a"]
    );

    client
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}))
        .await;
    eventually("news vacated", || {
        server.channels() == ["private-a", "private-encrypted-a"]
    })
    .await;
    server
        .trigger(&[ch("news")], &ev("after"), &json!({}))
        .await
        .unwrap();
    server
        .trigger(&[ch("private-a")], &ev("mine"), &json!({"n": 1}))
        .await
        .unwrap();
    let got = client.recv_event("mine", Some("private-a")).await;
    assert_eq!(got["data"], "{\"n\":1}");
}

#[tokio::test]
async fn presence_members_are_counted_per_user() {
    let (server, addr) = start_default().await;
    let mut watcher = Client::connect(addr).await;
    let joined = watcher.subscribe_presence("presence-room", "w").await;
    assert_eq!(
        data_of(&joined)["presence"],
        json!({"ids": ["w"], "hash": {"w": {"name": "user w"}}, "count": 1})
    );
    let mut alice_phone = Client::connect(addr).await;
    let mut alice_laptop = Client::connect(addr).await;
    let first = alice_phone
        .subscribe_presence("presence-room", "alice")
        .await;
    assert_eq!(data_of(&first)["presence"]["count"], 2);
    let added = watcher
        .recv_event("pusher_internal:member_added", None)
        .await;
    assert_eq!(
        data_of(&added),
        json!({"user_id": "alice", "user_info": {"name": "user alice"}})
    );
    alice_laptop
        .subscribe_presence("presence-room", "alice")
        .await;
    // The second socket of the same user is no new member.
    drop(alice_phone);
    eventually("phone gone", || server.connection_count() == 2).await;
    watcher.assert_quiet(Duration::from_millis(300)).await;
    drop(alice_laptop);
    let removed = watcher
        .recv_event("pusher_internal:member_removed", None)
        .await;
    assert_eq!(data_of(&removed), json!({"user_id": "alice"}));

    // Numeric user ids are strings on the wire.
    let mut numeric = Client::connect(addr).await;
    let channel_data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
    let auth = signature::authorize_channel(
        KEY,
        &secret(),
        &numeric.socket_id,
        &ch("presence-room"),
        Some(channel_data),
    )
    .unwrap();
    let ok = numeric
        .subscribe_with(
            json!({"channel": "presence-room", "auth": auth.auth, "channel_data": channel_data}),
        )
        .await;
    assert_eq!(data_of(&ok)["presence"]["ids"], json!(["10", "w"]));
}

#[tokio::test]
async fn presence_member_limit() {
    let mut limits = AppLimits::default();
    limits.max_presence_members = 2;
    let (_server, addr) = start(ServerConfig::new(vec![app().with_limits(limits)])).await;
    let mut clients = Vec::new();
    for user in ["1", "2"] {
        let mut c = Client::connect(addr).await;
        assert_eq!(
            c.subscribe_presence("presence-small", user).await["event"],
            "pusher_internal:subscription_succeeded"
        );
        clients.push(c);
    }
    let mut third = Client::connect(addr).await;
    let refused = third.subscribe_presence("presence-small", "3").await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    // Another socket of an existing member still fits.
    assert_eq!(
        third.subscribe_presence("presence-small", "1").await["event"],
        "pusher_internal:subscription_succeeded"
    );
}

#[tokio::test]
async fn client_events_rules() {
    let (_server, addr) = start_default().await;
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe_presence("presence-chat", "alice").await;
    b.subscribe_presence("presence-chat", "bob").await;
    a.recv_event("pusher_internal:member_added", None).await;
    a.send(json!({"event": "client-typing", "channel": "presence-chat", "data": {"on": true}}))
        .await;
    let got = b.recv_event("client-typing", Some("presence-chat")).await;
    assert_eq!(got["user_id"], "alice");
    assert_eq!(data_of(&got), json!({"on": true}));
    a.assert_quiet(Duration::from_millis(200)).await; // not echoed

    // Public channels and channels not joined refuse client events.
    a.subscribe("public").await;
    a.send(json!({"event": "client-x", "channel": "public", "data": {}}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:error");
    a.send(json!({"event": "client-x", "channel": "private-other", "data": {}}))
        .await;
    assert_eq!(a.recv().await["event"], "pusher:error");

    // More than 10 a second: 4301 errors, those events are dropped, the connection stays.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..15 {
        a.send(json!({"event": "client-burst", "channel": "presence-chat", "data": {"i": i}}))
            .await;
    }
    a.send(json!({"event": "pusher:ping", "data": {}})).await;
    let mut rejected = 0;
    loop {
        let frame = a.recv().await;
        if frame["event"] == "pusher:pong" {
            break;
        }
        assert_eq!(frame["event"], "pusher:error");
        assert_eq!(data_of(&frame)["code"], 4301);
        rejected += 1;
    }
    assert!(rejected >= 1, "15 events in one burst exceed 10/s");
    for _ in 0..15 - rejected {
        b.recv_event("client-burst", None).await;
    }
    b.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn client_events_can_be_disabled_per_app() {
    let mut limits = AppLimits::default();
    limits.client_events = false;
    let (_server, addr) = start(ServerConfig::new(vec![app().with_limits(limits)])).await;
    let mut a = Client::connect(addr).await;
    a.subscribe_private("private-x").await;
    a.send(json!({"event": "client-x", "channel": "private-x", "data": {}}))
        .await;
    let error = a.recv().await;
    assert_eq!(error["event"], "pusher:error");
    assert!(
        data_of(&error)["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
}

#[tokio::test]
async fn sign_in_user_channel_and_termination() {
    let (server, addr) = start_default().await;
    let mut a = Client::connect(addr).await;
    // The user channel needs a sign-in first.
    let refused = a.subscribe("#server-to-user-42").await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    let user_data = r#"{"id":"42","name":"A"}"#;
    let auth = signature::authenticate_user(KEY, &secret(), &a.socket_id, user_data).unwrap();
    a.send(json!({"event": "pusher:signin", "data": {"auth": auth.auth, "user_data": user_data}}))
        .await;
    let ok = a.recv_event("pusher:signin_success", None).await;
    assert_eq!(data_of(&ok)["user_data"], user_data);
    assert_eq!(
        a.subscribe("#server-to-user-42").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(server.state_counts().users, 1);

    // A forged sign-in closes with 4009.
    let mut forger = Client::connect(addr).await;
    forger.send(json!({"event": "pusher:signin", "data": {"auth": format!("{KEY}:{}", "ab".repeat(32)), "user_data": user_data}})).await;
    assert_eq!(forger.closed().await.0, 4009);

    // terminate_connections through the HTTP API closes the user's sockets with 4009.
    let path = "/apps/3/users/42/terminate_connections";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let params = signature::sign_request(KEY, &secret(), "POST", path, Some(b"{}"), now, &[]);
    let url =
        reqwest::Url::parse_with_params(&format!("http://{addr}{path}"), params.iter()).unwrap();
    let reply = reqwest::Client::new()
        .post(url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(a.closed().await.0, 4009);
    eventually("user forgotten", || server.state_counts().users == 0).await;
}

#[tokio::test]
async fn cache_channels_replay_the_last_event() {
    let (server, addr) = start_default().await;
    let mut a = Client::connect(addr).await;
    a.subscribe("cache-prices").await;
    assert_eq!(a.recv().await["event"], "pusher:cache_miss");
    server
        .trigger(&[ch("cache-prices")], &ev("price"), &json!({"eur": 1}))
        .await
        .unwrap();
    server
        .trigger(&[ch("cache-prices")], &ev("price"), &json!({"eur": 2}))
        .await
        .unwrap();
    let mut b = Client::connect(addr).await;
    b.subscribe("cache-prices").await;
    let replay = b.recv().await;
    assert_eq!(
        (replay["event"].as_str(), data_of(&replay)["eur"].as_u64()),
        (Some("price"), Some(2))
    );
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_only_that_connection() {
    let (server, addr) = start_default().await;
    let mut bystander = Client::connect(addr).await;
    bystander.subscribe("news").await;

    let mut garbage = Client::connect(addr).await;
    garbage.ws.send(Message::text("{not json")).await.unwrap();
    let (code, frames) = garbage.closed().await;
    assert_eq!(code, 4300);
    assert_eq!(data_of(&frames[0])["code"], 4300);

    let mut big = Client::connect(addr).await;
    let payload = "x".repeat(20 * 1024);
    big.send(json!({"event": "client-x", "channel": "private-a", "data": payload}))
        .await;
    let (code, frames) = big.closed().await;
    assert_eq!(code, 4300);
    assert!(
        data_of(&frames[0])["message"]
            .as_str()
            .unwrap()
            .contains("limit")
    );

    let mut huge = Client::connect(addr).await;
    let _ = huge.ws.send(Message::text("y".repeat(1024 * 1024))).await;
    // Beyond the transport's own limit the connection ends, with or without a close frame.
    let ended = tokio::time::timeout(PATIENCE, async {
        use futures_util::StreamExt;
        while let Some(Ok(message)) = huge.ws.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok());

    server
        .trigger(&[ch("news")], &ev("still-up"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        bystander.recv_event("still-up", None).await["channel"],
        "news"
    );
    eventually("bad connections removed", || server.connection_count() == 1).await;
}

#[tokio::test]
async fn over_capacity_is_4100() {
    let mut limits = AppLimits::default();
    limits.max_connections = 2;
    let (_server, addr) = start(ServerConfig::new(vec![app().with_limits(limits)])).await;
    let _a = Client::connect(addr).await;
    let _b = Client::connect(addr).await;
    let mut c = Client {
        ws: raw_connect(addr, &format!("/app/{KEY}?protocol=7")).await,
        socket_id: String::new(),
        activity_timeout: 0,
    };
    assert_eq!(c.closed().await.0, 4100);
}

#[tokio::test]
async fn no_state_remains_after_every_client_leaves() {
    let (server, addr) = start_default().await;
    let mut clients = Vec::new();
    for i in 0..20 {
        let mut c = Client::connect(addr).await;
        c.subscribe("public-a").await;
        c.subscribe_private(&format!("private-{}", i % 3)).await;
        c.subscribe_presence("presence-all", &format!("u{}", i % 7))
            .await;
        let user_data = format!(r#"{{"id":"u{i}"}}"#);
        let auth = signature::authenticate_user(KEY, &secret(), &c.socket_id, &user_data).unwrap();
        c.send(
            json!({"event": "pusher:signin", "data": {"auth": auth.auth, "user_data": user_data}}),
        )
        .await;
        c.recv_event("pusher:signin_success", None).await;
        clients.push(c);
    }
    let counts = server.state_counts();
    assert_eq!(
        (
            counts.sockets,
            counts.channels,
            counts.members,
            counts.users
        ),
        (20, 5, 7, 20)
    );
    // Half leave politely, half just vanish.
    for (i, mut c) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            c.ws.close(None).await.unwrap();
        }
    }
    eventually("all state gone", || {
        let c = server.state_counts();
        (c.sockets, c.channels, c.members, c.users) == (0, 0, 0, 0)
    })
    .await;
    assert!(server.channels().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_without_delaying_others() {
    let mut limits = AppLimits::default();
    limits.send_buffer_frames = 16;
    let (server, addr) = start(ServerConfig::new(vec![app().with_limits(limits)])).await;
    let mut stalled = Client::connect(addr).await;
    stalled.subscribe("firehose").await;
    let mut reader = Client::connect(addr).await;
    reader.subscribe("firehose").await;
    let payload = json!("z".repeat(9 * 1024));
    let total = 2_000;
    let seen = Arc::new(AtomicUsize::new(0));
    let progress = seen.clone();
    let reading = tokio::spawn(async move {
        while progress.load(Ordering::SeqCst) < total {
            let frame = reader.recv().await;
            if frame["event"] == "tick" {
                progress.fetch_add(1, Ordering::SeqCst);
            }
        }
        // Handed back, so it stays connected while the stalled client's fate is checked.
        reader
    });
    for sent in 0..total {
        // The reader keeps up (never more than 8 behind); the stalled client reads nothing.
        while sent >= seen.load(Ordering::SeqCst) + 8 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server
            .trigger(&[ch("firehose")], &ev("tick"), &payload)
            .await
            .unwrap();
    }
    let _reader = tokio::time::timeout(PATIENCE * 3, reading)
        .await
        .expect("the reader is never held up by the stalled client")
        .unwrap();
    assert_eq!(
        seen.load(Ordering::SeqCst),
        total,
        "the reading client got every event"
    );
    // ~18 MB towards a client that reads nothing: its queue fills and it is closed.
    eventually("stalled client dropped", || server.connection_count() == 1).await;
    drop(stalled);
}
