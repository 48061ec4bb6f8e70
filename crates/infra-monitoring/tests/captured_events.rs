//! Event fields through the `sentry` crate's test transport, with our own client options
//! (scrubbers included): every `ErrorTracking` helper's tags, fingerprint and level; user,
//! breadcrumbs in order, contexts, environment, release; and the scrubber table.
#![cfg(feature = "sentry")]

use infra_core::{Breadcrumb, Context, Env, ErrorReporter, Level, User};
use infra_monitoring::{Monitoring, MonitoringConfig, sentry_options};
use sentry::protocol::{Event, Value};
use sentry::test::with_captured_events_options;

fn config() -> MonitoringConfig {
    MonitoringConfig::from_env(&Env::from_pairs([
        ("SENTRY_DSN", "https://public@sentry.example/7"),
        ("SENTRY_ENVIRONMENT", "production"),
        ("SENTRY_RELEASE", "agent@2.0.0"),
    ]))
    .unwrap()
}

fn capture(f: impl FnOnce(&Monitoring)) -> Vec<Event<'static>> {
    let config = config();
    let options = sentry_options(&config).unwrap();
    let monitoring = Monitoring::attach(config).unwrap();
    with_captured_events_options(|| f(&monitoring), options)
}

#[derive(Debug)]
struct QueryTimeout;

impl std::fmt::Display for QueryTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("query timed out")
    }
}

impl std::error::Error for QueryTimeout {}

fn tag<'a>(event: &'a Event<'static>, key: &str) -> Option<&'a str> {
    event.tags.get(key).map(String::as_str)
}

#[test]
fn every_helper_tags_fingerprints_and_levels_consistently() {
    let events = capture(|m| {
        let t = m.tracking();
        t.api_error("/api/events/:id", &QueryTimeout, 503);
        t.api_error("/api/events/:id", &QueryTimeout, 404);
        t.database_error("find_user", &QueryTimeout);
        t.cache_error("get", "user:42:prefs", &QueryTimeout);
        t.job_error("sync-calendar", "calendar/sync.requested", 3, &QueryTimeout);
        t.realtime_error("private-user-42", "meeting.moved", &QueryTimeout);
        t.external_service_error("google-calendar", &QueryTimeout);
    });
    assert_eq!(events.len(), 7);
    let fp = |e: &Event<'static>| {
        e.fingerprint
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };

    assert_eq!(tag(&events[0], "error.area"), Some("api"));
    assert_eq!(tag(&events[0], "route"), Some("/api/events/:id"));
    assert_eq!(tag(&events[0], "http.status_code"), Some("503"));
    assert_eq!(
        fp(&events[0]),
        ["api", "/api/events/:id", "5xx", "QueryTimeout"]
    );
    assert_eq!(events[0].level, sentry::Level::Error);
    assert_eq!(events[1].level, sentry::Level::Warning, "4xx are warnings");
    assert_eq!(fp(&events[1])[2], "4xx");

    assert_eq!(tag(&events[2], "db.operation"), Some("find_user"));
    assert_eq!(fp(&events[2]), ["database", "find_user", "QueryTimeout"]);

    assert_eq!(tag(&events[3], "cache.operation"), Some("get"));
    assert_eq!(fp(&events[3]), ["cache", "get", "QueryTimeout"]);
    let sentry::protocol::Context::Other(ctx) = &events[3].contexts["context"] else {
        panic!()
    };
    assert_eq!(
        ctx["cache.key"],
        Value::from("user:42:prefs"),
        "keys go to the context, not tags"
    );

    assert_eq!(tag(&events[4], "job.function"), Some("sync-calendar"));
    assert_eq!(
        tag(&events[4], "job.event"),
        Some("calendar/sync.requested")
    );
    let sentry::protocol::Context::Other(ctx) = &events[4].contexts["context"] else {
        panic!()
    };
    assert_eq!(ctx["attempt"], Value::from(3));

    assert_eq!(tag(&events[5], "realtime.event"), Some("meeting.moved"));
    assert_eq!(
        fp(&events[5]),
        ["realtime", "meeting.moved", "QueryTimeout"]
    );

    assert_eq!(tag(&events[6], "external.service"), Some("google-calendar"));
    for event in &events {
        assert_eq!(event.environment.as_deref(), Some("production"));
        assert_eq!(event.release.as_deref(), Some("agent@2.0.0"));
        assert_eq!(event.exception.values[0].ty, "QueryTimeout");
        assert_eq!(
            event.exception.values[0].value.as_deref(),
            Some("query timed out")
        );
    }
}

#[test]
fn user_breadcrumbs_and_context_travel_with_the_event() {
    let events = capture(|m| {
        m.set_user(Some(User {
            id: Some("u-1".into()),
            email: Some("grace@example.com".into()),
            username: Some("grace".into()),
            workspace: Some("navy".into()),
        }));
        for step in ["login", "open calendar", "drag event"] {
            m.add_breadcrumb(Breadcrumb::new(step).category("ui").level(Level::Info));
        }
        let mut context = Context::new();
        context.insert("event_id".into(), 99.into());
        m.capture_message("slow agent reply", Level::Warning, &context);
    });
    let event = &events[0];
    assert_eq!(event.level, sentry::Level::Warning);
    assert_eq!(event.message.as_deref(), Some("slow agent reply"));
    let user = event.user.as_ref().unwrap();
    assert_eq!(user.id.as_deref(), Some("u-1"));
    assert_eq!(user.username.as_deref(), Some("grace"));
    assert_eq!(
        user.email, None,
        "emails are kept only when SENTRY_SEND_EMAILS allows"
    );
    assert_eq!(tag(event, "workspace"), Some("navy"));
    let crumbs: Vec<&str> = event
        .breadcrumbs
        .values
        .iter()
        .filter_map(|b| b.message.as_deref())
        .collect();
    assert_eq!(crumbs, ["login", "open calendar", "drag event"]);
    let sentry::protocol::Context::Other(ctx) = &event.contexts["context"] else {
        panic!()
    };
    assert_eq!(ctx["event_id"], Value::from(99));
}

#[test]
fn the_scrubber_table_nothing_secret_reaches_the_transport() {
    let secrets = [
        "hunter2",
        "sk_live_abcdef",
        "eyJhbGciOi.payload.sig",
        "session=abc123",
        "s3cr3t-dsn-key",
        "pa55word",
    ];
    let events = capture(|m| {
        m.add_breadcrumb(
            Breadcrumb::new("GET /calendar with Bearer eyJhbGciOi.payload.sig")
                .data("Authorization", "Bearer eyJhbGciOi.payload.sig")
                .data("cookie", "session=abc123")
                .data(
                    "nested",
                    serde_json::json!({"password": "hunter2", "ok": 1}),
                ),
        );
        sentry::configure_scope(|scope| {
            scope.set_extra("stripe_api_key", "sk_live_abcdef".into());
            scope.set_extra("database", "postgres://app:pa55word@db/app".into());
            scope.set_extra(
                "settings",
                serde_json::json!({"SENTRY_DSN": "https://s3cr3t-dsn-key@o1.sentry.io/1"}),
            );
        });
        let mut context = Context::new();
        context.insert("token".into(), "sk_live_abcdef".into());
        context.insert("request".into(), serde_json::json!({"headers": {"Authorization": "Bearer eyJhbGciOi.payload.sig", "Cookie": "session=abc123"}}));
        let err = std::io::Error::other("login failed for password=hunter2");
        m.capture_error(&err, &context);
        // A request as sentry-tower would attach it.
        sentry::with_scope(
            |scope| {
                scope.add_event_processor(|mut event| {
                    event.request = Some(sentry::protocol::Request {
                        url: "https://app.example/api?token=sk_live_abcdef&page=2"
                            .parse()
                            .ok(),
                        method: Some("POST".into()),
                        data: Some(r#"{"email":"a@b.c","password":"hunter2"}"#.into()),
                        query_string: Some("token=sk_live_abcdef&page=2".into()),
                        cookies: Some("session=abc123".into()),
                        headers: [
                            (
                                "Authorization".to_string(),
                                "Bearer eyJhbGciOi.payload.sig".to_string(),
                            ),
                            ("X-Api-Key".to_string(), "sk_live_abcdef".to_string()),
                        ]
                        .into_iter()
                        .collect(),
                        ..Default::default()
                    });
                    Some(event)
                });
            },
            || sentry::capture_message("with a request", sentry::Level::Error),
        );
    });
    assert_eq!(events.len(), 2);
    for event in &events {
        let json = serde_json::to_string(event).unwrap();
        for secret in secrets {
            assert!(!json.contains(secret), "{secret} leaked in {json}");
        }
    }
    assert!(
        serde_json::to_string(&events[0])
            .unwrap()
            .contains("[redacted]")
    );
}
