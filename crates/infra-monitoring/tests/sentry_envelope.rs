//! End to end: the real Sentry client posts envelopes to a local receiver speaking Sentry's
//! ingestion endpoint; the test parses them and checks the event, with secrets scrubbed.
#![cfg(feature = "sentry")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use infra_core::{Breadcrumb, Context, Env, ErrorReporter, HealthCheck, HealthStatus, Level, User};
use infra_monitoring::Monitoring;
use serde_json::Value;

type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

async fn envelope(
    State(received): State<Received>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let auth = headers
        .get("x-sentry-auth")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((project, auth, body.to_vec()));
    StatusCode::OK
}

/// Splits an envelope into (item header, payload) pairs of JSON.
fn items(body: &[u8]) -> Vec<(Value, Value)> {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines();
    let _header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(item_header) = lines.next() {
        if item_header.trim().is_empty() {
            continue;
        }
        let header: Value = serde_json::from_str(item_header).unwrap();
        let payload: Value =
            serde_json::from_str(lines.next().unwrap_or("null")).unwrap_or(Value::Null);
        out.push((header, payload));
    }
    out
}

#[derive(Debug)]
struct CalendarSyncError {
    calendar: String,
}

impl std::fmt::Display for CalendarSyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sync of {} failed via postgres://app:hunter2@db/app",
            self.calendar
        )
    }
}

impl std::error::Error for CalendarSyncError {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_envelope_endpoint_with_context_and_without_secrets() {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/api/{project}/envelope/", post(envelope))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let env = Env::from_pairs([
        ("SENTRY_DSN", format!("http://publickey123@{addr}/42")),
        ("SENTRY_ENVIRONMENT", "staging".into()),
        ("SENTRY_RELEASE", "calendar-agent@1.2.3".into()),
    ]);
    let monitoring = Monitoring::from_env(&env).unwrap();
    assert_eq!(monitoring.backend_name(), "sentry");
    let report = monitoring.check().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);

    monitoring.set_user(Some(User {
        id: Some("u-7".into()),
        email: Some("ada@example.com".into()),
        username: Some("ada".into()),
        workspace: Some("acme".into()),
    }));
    monitoring.add_breadcrumb(Breadcrumb::new("opened calendar").category("ui"));
    monitoring.add_breadcrumb(
        Breadcrumb::new("called Google with Bearer ya29.secret")
            .category("http")
            .level(Level::Warning)
            .data("api_key", "sk-live-999"),
    );
    let mut context = Context::new();
    context.insert("calendar_id".into(), "cal-1".into());
    context.insert("access_token".into(), "tok-very-secret".into());
    let err = CalendarSyncError {
        calendar: "work".into(),
    };
    let id = monitoring.capture_error(&err, &context).unwrap();
    assert!(monitoring.flush(Duration::from_secs(5)));

    let received = received.lock().unwrap_or_else(|e| e.into_inner());
    assert!(!received.is_empty(), "an envelope arrived");
    let (project, auth, body) = &received[0];
    assert_eq!(project, "42");
    assert!(auth.starts_with("Sentry "), "{auth}");
    assert!(
        auth.contains("sentry_key=publickey123") && auth.contains("sentry_version=7"),
        "{auth}"
    );

    let raw = String::from_utf8_lossy(body);
    for secret in [
        "hunter2",
        "ya29.secret",
        "sk-live-999",
        "tok-very-secret",
        "ada@example.com",
    ] {
        assert!(
            !raw.contains(secret),
            "{secret} reached the transport: {raw}"
        );
    }
    let (_, event) = items(body)
        .into_iter()
        .find(|(h, _)| h["type"] == "event")
        .expect("an event item");
    assert_eq!(
        event["event_id"].as_str().unwrap().replace('-', ""),
        id.replace('-', "")
    );
    // The protocol leaves out the default level, `error`.
    assert_eq!(
        event
            .get("level")
            .and_then(Value::as_str)
            .unwrap_or("error"),
        "error"
    );
    assert_eq!(event["environment"], "staging");
    assert_eq!(event["release"], "calendar-agent@1.2.3");
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], "CalendarSyncError");
    assert!(
        exception["value"]
            .as_str()
            .unwrap()
            .contains("sync of work failed")
    );
    assert_eq!(event["user"]["id"], "u-7");
    assert_eq!(event["user"]["username"], "ada");
    assert!(event["user"].get("email").is_none());
    assert_eq!(event["tags"]["workspace"], "acme");
    assert_eq!(event["contexts"]["context"]["calendar_id"], "cal-1");
    assert_eq!(event["contexts"]["context"]["access_token"], "[redacted]");
    let crumbs = event["breadcrumbs"]["values"].as_array().unwrap();
    let messages: Vec<&str> = crumbs
        .iter()
        .filter_map(|c| c["message"].as_str())
        .collect();
    assert_eq!(
        messages,
        ["opened calendar", "called Google with Bearer [redacted]"]
    );
    assert_eq!(crumbs[1]["level"], "warning");
    assert_eq!(crumbs[1]["data"]["api_key"], "[redacted]");
}
