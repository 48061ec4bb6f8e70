//! The health routes answer the connection report.
#![cfg(feature = "http")]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use infra::{Env, Infra};
use tower::ServiceExt;

#[tokio::test]
async fn health_route_reports_every_service() {
    let infra = Arc::new(Infra::from_env_with(&Env::empty()).unwrap());
    let app = infra::http::health_routes(infra);
    let response = app
        .clone()
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(json.is_object());
    #[cfg(feature = "cache")]
    assert_eq!(json["cache"]["backend"], "memory");

    let live = app
        .oneshot(Request::get("/health/live").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
}

#[cfg(feature = "cache")]
#[tokio::test]
async fn unhealthy_service_turns_health_into_503() {
    let env = Env::from_pairs([
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("INFRA_HEALTH_TIMEOUT", "2s"),
    ]);
    let app = infra::http::health_routes(Arc::new(Infra::from_env_with(&env).unwrap()));
    let response = app
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}
