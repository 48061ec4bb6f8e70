//! The Inngest client against a local HTTP server speaking the Event API.
#![cfg(feature = "inngest")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use infra_core::{ErrorKind, Event, EventSender, HealthCheck, HealthStatus};
use infra_jobs::{InngestClient, InngestConfig};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Value)>>>);

async fn receive(
    State(seen): State<Seen>,
    Path(key): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if key != "good-key" {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "Event key not found", "status": 401})),
        );
    }
    let n = body.as_array().map(Vec::len).unwrap_or(1);
    seen.0.lock().unwrap().push((key, body));
    let ids: Vec<String> = (0..n).map(|i| format!("01ID{i}")).collect();
    (StatusCode::OK, Json(json!({"ids": ids, "status": 200})))
}

async fn server() -> (url::Url, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/e/{key}", post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url::Url::parse(&format!("http://{addr}")).unwrap(), seen)
}

#[tokio::test]
async fn sends_events_as_the_event_api_expects() {
    let (base, seen) = server().await;
    let client = InngestClient::new(InngestConfig::new(base, "good-key")).unwrap();
    let ids = client
        .send_many(vec![
            Event::new("calendar/event.created", json!({"eventId": 1})).with_id("dedup-1"),
            Event::new("user/signup", json!({})).with_user(json!({"id": "u1"})),
        ])
        .await
        .unwrap();
    assert_eq!(ids, vec!["01ID0", "01ID1"]);

    let seen = seen.0.lock().unwrap();
    let (key, body) = &seen[0];
    assert_eq!(key, "good-key");
    let events = body.as_array().unwrap();
    assert_eq!(events[0]["name"], "calendar/event.created");
    assert_eq!(events[0]["data"]["eventId"], 1);
    assert_eq!(events[0]["id"], "dedup-1");
    assert!(events[0]["ts"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(events[1]["user"]["id"], "u1");
    assert!(events[1].get("id").is_none());
}

#[tokio::test]
async fn rejected_key_is_a_config_error_without_the_key() {
    let (base, _) = server().await;
    let client = InngestClient::new(InngestConfig::new(base, "wrong-key-123")).unwrap();
    let err = client.send(Event::new("x", json!({}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.variable(), Some("INNGEST_EVENT_KEY"));
    assert!(!format!("{err} {err:?}").contains("wrong-key-123"));
    let report = client.check().await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(!report.detail.contains("wrong-key-123"));
}

#[tokio::test]
async fn health_probe_accepts_key_and_sends_nothing() {
    let (base, seen) = server().await;
    let client = InngestClient::new(InngestConfig::new(base, "good-key")).unwrap();
    let report = client.check().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert_eq!(report.backend, "inngest");
    assert_eq!(seen.0.lock().unwrap()[0].1, json!([]));
}

#[tokio::test]
async fn closed_port_is_unavailable_and_invalid_event_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let base = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let mut config = InngestConfig::new(base, "secret-key-xyz");
    config.timeout = Duration::from_millis(800);
    let client = InngestClient::new(config).unwrap();
    let err = client.send(Event::new("x", json!({}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(err.is_retryable());
    // Refused connections were retried before the deadline ended the send.
    let attempts: u32 = err.context("attempts").unwrap().parse().unwrap();
    assert!(attempts > 1, "{err:?}");
    assert!(!format!("{err:?}").contains("secret-key-xyz"), "{err:?}");

    let err = client.send(Event::new("", json!({}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A scripted reply: status, JSON body, `Retry-After`.
type Reply = (u16, Value, Option<&'static str>);

/// A stand-in Event API that answers from a script, then 200; it counts the requests.
#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<Vec<Reply>>>,
    requests: Arc<Mutex<usize>>,
}

async fn scripted(
    State(script): State<Script>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    *script.requests.lock().unwrap() += 1;
    let next = {
        let mut replies = script.replies.lock().unwrap();
        (!replies.is_empty()).then(|| replies.remove(0))
    };
    match next {
        Some((status, reply, retry_after)) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), Json(reply)).into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            response
        }
        None => {
            let n = body.as_array().map(Vec::len).unwrap_or(1);
            let ids: Vec<String> = (0..n).map(|i| format!("ok{i}")).collect();
            Json(json!({"ids": ids, "status": 200})).into_response()
        }
    }
}

async fn scripted_server(replies: Vec<Reply>, timeout: Duration) -> (InngestClient, Script) {
    let script = Script {
        replies: Arc::new(Mutex::new(replies)),
        requests: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/e/{key}", post(scripted))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut config = InngestConfig::new(url::Url::parse(&format!("http://{addr}")).unwrap(), "k");
    config.timeout = timeout;
    (InngestClient::new(config).unwrap(), script)
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried_until_success() {
    let (client, script) = scripted_server(
        vec![
            (503, json!({"error": "overloaded", "status": 503}), None),
            (429, json!({"error": "slow down", "status": 429}), Some("0")),
            (500, json!({"error": "oops", "status": 500}), None),
        ],
        Duration::from_secs(20),
    )
    .await;
    let id = client.send(Event::new("a/b", json!({}))).await.unwrap();
    assert_eq!(id, "ok0");
    assert_eq!(*script.requests.lock().unwrap(), 4);
}

#[tokio::test]
async fn client_errors_are_final_and_carry_the_servers_message() {
    let (client, script) = scripted_server(
        vec![(
            400,
            json!({"error": "event name is reserved", "status": 400}),
            None,
        )],
        Duration::from_secs(20),
    )
    .await;
    let err = client
        .send(Event::new("inngest/x", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
    assert!(err.to_string().contains("event name is reserved"), "{err}");
    assert_eq!(err.context("status"), Some("400"));
    assert_eq!(err.context("attempts"), Some("1"));
    assert_eq!(*script.requests.lock().unwrap(), 1);
}

#[tokio::test]
async fn retries_stop_at_the_attempt_limit_with_the_last_error() {
    let replies = (0..10)
        .map(|_| (502, json!({"error": "bad gateway", "status": 502}), None))
        .collect();
    let (client, script) = scripted_server(replies, Duration::from_secs(30)).await;
    let err = client.send(Event::new("a/b", json!({}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("bad gateway"), "{err}");
    assert_eq!(err.context("attempts"), Some("5"));
    assert_eq!(*script.requests.lock().unwrap(), 5);
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_ends_the_send_as_rate_limited() {
    let (client, script) = scripted_server(
        vec![(
            429,
            json!({"error": "rate limited", "status": 429}),
            Some("3600"),
        )],
        Duration::from_secs(5),
    )
    .await;
    let err = client.send(Event::new("a/b", json!({}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(*script.requests.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_hung_server_is_a_timeout_within_the_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts connections and never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut config = InngestConfig::new(url::Url::parse(&format!("http://{addr}")).unwrap(), "k");
    config.timeout = Duration::from_millis(500);
    let client = InngestClient::new(config).unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        client.send(Event::new("a", json!({}))),
    )
    .await
    .expect("the client's own deadline ends the call")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_and_ends_the_send_at_once() {
    // u64::MAX seconds, more digits than a u64 holds, a date thousands of years ahead: the
    // wait asked for is cut to a day, which is beyond the deadline, so the send ends
    // rate-limited — no panic, no wait.
    for ask in [
        "18446744073709551615",
        "99999999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let (client, script) = scripted_server(
            vec![(
                429,
                json!({"error": "rate limited", "status": 429}),
                Some(ask),
            )],
            Duration::from_secs(5),
        )
        .await;
        let send = tokio::spawn(async move { client.send(Event::new("a/b", json!({}))).await });
        let err = tokio::time::timeout(Duration::from_secs(60), send)
            .await
            .expect("the send keeps its own deadline")
            .expect("the send does not panic")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{ask}: {err:?}");
        assert_eq!(
            err.retry_after(),
            Some(Duration::from_secs(24 * 60 * 60)),
            "{ask}"
        );
        assert_eq!(*script.requests.lock().unwrap(), 1, "{ask}");
    }
}
