//! Webhooks from the embedded server: signed, batched, retried, leaves delayed.
#![cfg(feature = "server")]

mod server_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use infra_realtime::server::ServerConfig;
use infra_realtime::signature;
use serde_json::{Value, json};
use server_support::*;

#[derive(Default)]
struct Receiver {
    events: Mutex<Vec<Value>>,
    posts: AtomicUsize,
}

/// Refuses the first POST with 500 (to prove the retry), then records verified events.
async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.posts.fetch_add(1, Ordering::SeqCst) == 0 {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/json");
    signature::verify_webhook(
        KEY,
        &secret(),
        &header("x-pusher-key"),
        &header("x-pusher-signature"),
        &body,
    )
    .expect("a valid webhook signature");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["time_ms"].as_u64().unwrap() > 0);
    r.events
        .lock()
        .unwrap()
        .extend(body["events"].as_array().unwrap().iter().cloned());
    StatusCode::OK
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_absorb_quick_returns() {
    let receiver = Arc::new(Receiver::default());
    let hooks = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hooks).await.unwrap() });

    let app =
        app().with_webhook_url(url::Url::parse(&format!("http://{hook_addr}/hooks")).unwrap());
    let config = ServerConfig::new(vec![app]).with_leave_delay(Duration::from_millis(300));
    let (_server, addr) = start(config).await;

    let mut a = Client::connect(addr).await;
    a.subscribe_presence("presence-room", "u1").await;
    a.send(json!({"event": "client-hi", "channel": "presence-room", "data": {"x": 1}}))
        .await;
    // A quick unsubscribe/resubscribe is absorbed: no vacated, no second occupied.
    a.subscribe("news").await;
    a.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}))
        .await;
    a.subscribe("news").await;
    drop(a);

    let names = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["name"].as_str().unwrap(),
                    e["channel"].as_str().unwrap()
                )
            })
            .collect()
    };
    eventually("the leaves are delivered", || {
        let events = receiver.events.lock().unwrap();
        let n = names(&events);
        n.contains(&"channel_vacated:presence-room".to_owned())
            && n.contains(&"channel_vacated:news".to_owned())
    })
    .await;
    let events = receiver.events.lock().unwrap().clone();
    let mut got = names(&events);
    got.sort();
    assert_eq!(
        got,
        [
            "channel_occupied:news",
            "channel_occupied:presence-room",
            "channel_vacated:news",
            "channel_vacated:presence-room",
            "client_event:presence-room",
            "member_added:presence-room",
            "member_removed:presence-room",
        ]
    );
    let client_event = events.iter().find(|e| e["name"] == "client_event").unwrap();
    assert_eq!(
        (
            client_event["event"].as_str(),
            client_event["user_id"].as_str()
        ),
        (Some("client-hi"), Some("u1"))
    );
    assert_eq!(client_event["data"], "{\"x\":1}");
    assert!(
        receiver.posts.load(Ordering::SeqCst) >= 2,
        "the refused batch was retried"
    );
}
