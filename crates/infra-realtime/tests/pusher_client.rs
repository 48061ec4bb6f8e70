//! The Pusher client against a local server that verifies signatures as Pusher does.
#![cfg(feature = "pusher")]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post};
use infra_core::{
    BatchEvent, ChannelName, ErrorKind, EventName, HealthCheck, HealthStatus, Realtime, Secret,
};
use infra_realtime::{PusherClient, PusherConfig, signature};
use serde_json::{Value, json};

const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Value)>>>);

/// Verifies requests the way the Pusher API does, with the crate's own verifier.
async fn verify(
    State(received): State<Received>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> (StatusCode, String) {
    let secret = Secret::new(SECRET.to_owned());
    let params: BTreeMap<String, String> = query.into_iter().collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if let Err(err) = signature::verify_request(
        KEY,
        &secret,
        method.as_str(),
        uri.path(),
        &params,
        &body,
        now,
    ) {
        return (StatusCode::UNAUTHORIZED, err.to_string());
    }
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    received
        .0
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), value));
    if method == Method::GET {
        (
            StatusCode::OK,
            json!({"channels": {"presence-a": {}, "b": {}}}).to_string(),
        )
    } else {
        (StatusCode::OK, "{}".into())
    }
}

async fn server() -> (url::Url, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/apps/3/events", post(verify))
        .route("/apps/3/batch_events", post(verify))
        .route("/apps/3/channels", get(verify))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        url::Url::parse(&format!("http://{addr}")).unwrap(),
        received,
    )
}

fn ch(n: &str) -> ChannelName {
    ChannelName::new(n).unwrap()
}

#[tokio::test]
async fn trigger_and_batch_are_signed_and_shaped_as_the_api_expects() {
    let (base, received) = server().await;
    let client =
        PusherClient::new(PusherConfig::new(base, "3", "278d425bdf160c739803", SECRET)).unwrap();
    client
        .trigger(
            &[ch("private-user-1"), ch("team")],
            &EventName::new("meeting.moved").unwrap(),
            &json!({"id": 9}),
        )
        .await
        .unwrap();
    client
        .trigger_batch(&[BatchEvent {
            channel: ch("a"),
            name: EventName::new("e").unwrap(),
            data: json!("raw"),
        }])
        .await
        .unwrap();
    let received = received.0.lock().unwrap();
    assert_eq!(received[0].0, "/apps/3/events");
    assert_eq!(
        received[0].1,
        json!({"name": "meeting.moved", "data": "{\"id\":9}", "channels": ["private-user-1", "team"]})
    );
    assert_eq!(
        received[1].1,
        json!({"batch": [{"channel": "a", "name": "e", "data": "raw"}]})
    );
}

#[tokio::test]
async fn wrong_secret_is_a_config_error_and_health_reports_it() {
    let (base, _) = server().await;
    let client = PusherClient::new(PusherConfig::new(
        base.clone(),
        "3",
        KEY,
        "wrong-secret-value",
    ))
    .unwrap();
    let err = client
        .trigger(&[ch("a")], &EventName::new("e").unwrap(), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.variable(), Some("PUSHER_SECRET"));
    assert!(!format!("{err:?}").contains("wrong-secret-value"));
    assert_eq!(client.check().await.status, HealthStatus::Unhealthy);

    let good = PusherClient::new(PusherConfig::new(base, "3", KEY, SECRET)).unwrap();
    let report = good.check().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert!(report.detail.contains("2 occupied"), "{}", report.detail);
}

#[tokio::test]
async fn limits_are_enforced_before_sending() {
    let (base, received) = server().await;
    let client = PusherClient::new(PusherConfig::new(base, "3", KEY, SECRET)).unwrap();
    let channels: Vec<_> = (0..101).map(|i| ch(&format!("c{i}"))).collect();
    let err = client
        .trigger(&channels, &EventName::new("e").unwrap(), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("channels"));
    assert!(received.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn auth_endpoints_use_the_app_credentials() {
    let base = url::Url::parse("http://127.0.0.1:1").unwrap();
    let client =
        PusherClient::new(PusherConfig::new(base, "3", "278d425bdf160c739803", SECRET)).unwrap();
    let auth = client
        .authorize_channel("1234.1234", &ch("private-foobar"), None)
        .unwrap();
    assert!(
        auth.auth
            .ends_with(":58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4")
    );
    assert_eq!(
        client
            .authorize_channel("bad", &ch("private-x"), None)
            .unwrap_err()
            .field(),
        Some("socket_id")
    );
    let err = client
        .trigger(&[ch("a")], &EventName::new("e").unwrap(), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}
