//! The Inngest client against a local HTTP server speaking the Event API.
#![cfg(feature = "inngest")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
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
    config.timeout = Duration::from_secs(2);
    let client = InngestClient::new(config).unwrap();
    let err = client.send(Event::new("x", json!({}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    assert!(err.is_retryable());
    assert!(!format!("{err:?}").contains("secret-key-xyz"), "{err:?}");

    let err = client.send(Event::new("", json!({}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
