//! End to end: the real Sentry client posts envelopes to a local receiver speaking Sentry's
//! ingestion endpoint; the test parses them and checks the event, with secrets scrubbed.
#![cfg(feature = "sentry")]

mod support;

use std::time::Duration;

use infra_core::{Breadcrumb, Context, Env, ErrorReporter, HealthCheck, HealthStatus, Level, User};
use infra_monitoring::Monitoring;
use serde_json::Value;
use support::{EnvelopeReceiver, item_types, items};

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
    let receiver = EnvelopeReceiver::start().await;
    let env = Env::from_pairs([
        ("SENTRY_DSN", receiver.dsn("publickey123", 42)),
        ("SENTRY_ENVIRONMENT", "staging".into()),
        ("SENTRY_RELEASE", "calendar-agent@1.2.3".into()),
    ]);
    let monitoring = Monitoring::from_env(&env).unwrap();
    assert_eq!(monitoring.backend(), "sentry");
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

    let received = receiver.received();
    // The health check's probe envelope carries no event.
    assert_eq!(item_types(&received[0].body), ["client_report"]);
    let envelope = received
        .iter()
        .find(|r| item_types(&r.body).iter().any(|t| t == "event"))
        .expect("an envelope with the event arrived");
    let (project, auth, body) = (&envelope.project, &envelope.auth, &envelope.body);
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

    // Each default integration once, as the SDK reports them (`sdk.integrations`).
    let integrations: Vec<&str> = event["sdk"]["integrations"]
        .as_array()
        .expect("sdk.integrations")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        "attach-stacktrace",
        "contexts",
        "panic",
        "process-stacktrace",
    ] {
        let count = integrations.iter().filter(|i| **i == expected).count();
        assert_eq!(count, 1, "{expected} in {integrations:?}");
    }
}
