//! tracing, the axum layers and panics, through the sentry test transport.
#![cfg(all(feature = "tracing", feature = "tower"))]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use infra_core::{Env, ErrorReporter, User};
use infra_monitoring::{
    Monitoring, MonitoringConfig, request_layers, sentry_options, tracing_layer,
};
use sentry::test::with_captured_events_options;
use tower::ServiceExt;
use tracing_subscriber::prelude::*;

fn config() -> MonitoringConfig {
    MonitoringConfig::from_env(&Env::from_pairs([(
        "SENTRY_DSN",
        "https://public@sentry.example/3",
    )]))
    .unwrap()
}

#[test]
fn tracing_errors_are_events_and_info_warn_are_breadcrumbs() {
    let events = with_captured_events_options(
        || {
            let subscriber = tracing_subscriber::registry().with(tracing_layer());
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!("ignored");
                tracing::info!(calendar = "work", "sync started");
                tracing::warn!("provider slow");
                tracing::error!(user = 7, "sync failed");
            });
        },
        sentry_options(&config()).unwrap(),
    );
    assert_eq!(events.len(), 1, "only the error is an event");
    let event = &events[0];
    assert_eq!(event.message.as_deref(), Some("sync failed"));
    let crumbs: Vec<&str> = event
        .breadcrumbs
        .values
        .iter()
        .filter_map(|b| b.message.as_deref())
        .collect();
    assert_eq!(crumbs, ["sync started", "provider slow"]);
}

#[test]
fn server_errors_are_captured_with_method_route_and_status() {
    let events = with_captured_events_options(
        || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (hub, http, server_errors) = request_layers::<Body>();
                let app = axum::Router::new()
                    .route(
                        "/api/events/{id}",
                        get(|| async { StatusCode::BAD_GATEWAY }),
                    )
                    .route("/ok", get(|| async { "fine" }))
                    .layer(server_errors)
                    .layer(http)
                    .layer(hub);
                let failed = app
                    .clone()
                    .oneshot(Request::get("/api/events/42").body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
                let ok = app
                    .oneshot(Request::get("/ok").body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(ok.status(), StatusCode::OK);
            });
        },
        sentry_options(&config()).unwrap(),
    );
    let errors: Vec<_> = events
        .iter()
        .filter(|e| e.level == sentry::Level::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{events:?}");
    let event = errors[0];
    assert_eq!(
        event.tags.get("route").map(String::as_str),
        Some("/api/events/{id}")
    );
    assert_eq!(
        event.tags.get("http.method").map(String::as_str),
        Some("GET")
    );
    assert_eq!(
        event.tags.get("http.status_code").map(String::as_str),
        Some("502")
    );
    let request = event.request.as_ref().expect("the request is attached");
    assert_eq!(request.method.as_deref(), Some("GET"));
}

#[test]
fn panics_are_captured_with_the_user() {
    let events = with_captured_events_options(
        || {
            let monitoring = Monitoring::attach(config()).unwrap();
            monitoring.set_user(Some(User {
                id: Some("u-9".into()),
                ..User::default()
            }));
            let outcome = std::panic::catch_unwind(|| panic!("agent crashed on event 42"));
            assert!(outcome.is_err());
        },
        sentry_options(&config()).unwrap(),
    );
    let event = events
        .iter()
        .find(|e| e.level == sentry::Level::Fatal)
        .expect("a fatal event for the panic");
    assert_eq!(
        event.user.as_ref().and_then(|u| u.id.as_deref()),
        Some("u-9")
    );
    let text = serde_json::to_string(event).unwrap();
    assert!(text.contains("agent crashed on event 42"), "{text}");
}
