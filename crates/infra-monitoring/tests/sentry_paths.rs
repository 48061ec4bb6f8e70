//! Issue 19, point 11: the ingestion key in `/e/{key}` never reaches Sentry — not in an
//! event's `request.url`, its message or breadcrumbs, nor in a transaction's name or request,
//! which the real client sends to a local envelope receiver.
#![cfg(all(feature = "sentry", feature = "tower"))]

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use infra_core::{Breadcrumb, Context, Env, ErrorReporter, Level};
use infra_monitoring::{Monitoring, request_layers};
use support::{EnvelopeReceiver, item_types, items};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingestion_key_in_a_path_never_reaches_sentry() {
    let receiver = EnvelopeReceiver::start().await;
    let env = Env::from_pairs([
        ("SENTRY_DSN", receiver.dsn("publickey123", 42)),
        ("SENTRY_TRACES_SAMPLE_RATE", "1.0".into()),
    ]);
    let monitoring = Monitoring::from_env(&env).unwrap();
    monitoring.add_breadcrumb(
        Breadcrumb::new("POST https://app.example.com/e/ingest-SECRET-1 was slow")
            .category("http")
            .data(
                "url",
                "https://app.example.com/e/ingest-SECRET-1?source=sdk",
            ),
    );

    let (hub, http, server_errors) = request_layers::<Body>();
    let app = axum::Router::new()
        .route(
            "/e/{event_key}",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(server_errors)
        .layer(http)
        .layer(hub);
    // A matched route that fails: an event (request attached) and a transaction.
    let failed = app
        .clone()
        .oneshot(
            Request::post("http://app.example.com/e/ingest-SECRET-2")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // A path no route matches: the transaction is named after the raw path.
    let missing = app
        .oneshot(
            Request::get("http://app.example.com/hooks/e/ingest-SECRET-3")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    monitoring
        .capture_message(
            "ingestion refused a batch on /e/ingest-SECRET-4",
            Level::Error,
            &Context::new(),
        )
        .unwrap();
    assert!(monitoring.flush(Duration::from_secs(10)));

    let received = receiver.received();
    let types: Vec<String> = received.iter().flat_map(|r| item_types(&r.body)).collect();
    assert!(types.iter().any(|t| t == "event"), "{types:?}");
    assert!(
        types.iter().filter(|t| *t == "transaction").count() >= 2,
        "both requests' transactions were sent: {types:?}"
    );
    for envelope in &received {
        let raw = String::from_utf8_lossy(&envelope.body);
        assert!(!raw.contains("SECRET"), "a key reached Sentry: {raw}");
    }
    // What is left is still useful: the route template, the host, the redaction.
    let transactions: Vec<String> = received
        .iter()
        .flat_map(|r| items(&r.body))
        .filter(|(header, _)| header["type"] == "transaction")
        .map(|(_, tx)| tx["transaction"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        transactions.iter().any(|t| t == "POST /e/{event_key}"),
        "{transactions:?}"
    );
    assert!(
        transactions.iter().any(|t| t == "GET /hooks/e/[redacted]"),
        "{transactions:?}"
    );
}
