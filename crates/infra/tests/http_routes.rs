//! The umbrella's routes: liveness, readiness, and the token-guarded infrastructure report.
#![cfg(feature = "http")]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use infra::{Env, Infra};
use tower::ServiceExt;

async fn get(app: &axum::Router, path: &str, bearer: Option<&str>) -> Response {
    let mut request = Request::get(path);
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn json(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn router(pairs: &[(&str, &str)]) -> axum::Router {
    let infra = Arc::new(Infra::from_env_with(&Env::from_pairs(pairs.iter().copied())).unwrap());
    infra.start().await.unwrap();
    infra.router()
}

#[tokio::test]
async fn liveness_answers_without_backends() {
    // A cache pointing at a closed port: liveness must not care.
    let app = router(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let response = get(&app, "/api/health", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["status"], "ok");
}

#[tokio::test]
async fn readiness_reports_every_service() {
    let app = router(&[]).await;
    let response = get(&app, "/api/health/ready", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_eq!(body["ready"], true);
    #[cfg(feature = "cache")]
    {
        assert_eq!(body["services"]["cache"]["backend"], "memory");
        assert_eq!(body["services"]["cache"]["ok"], true);
    }
    #[cfg(feature = "db")]
    assert_eq!(body["services"]["database"]["status"], "not_configured");
}

#[cfg(feature = "cache")]
#[tokio::test]
async fn unhealthy_service_turns_readiness_into_503() {
    let app = router(&[
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("INFRA_HEALTH_TIMEOUT", "2s"),
    ])
    .await;
    let response = get(&app, "/api/health/ready", None).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(response).await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["services"]["cache"]["status"], "unhealthy");
}

#[tokio::test]
async fn test_infrastructure_is_hidden_without_a_token() {
    let app = router(&[]).await;
    let response = get(&app, "/api/test-infrastructure", Some("anything")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn test_infrastructure_needs_the_exact_bearer_token() {
    let app = router(&[("INFRA_ADMIN_TOKEN", "op-token-123")]).await;
    for wrong in [None, Some("op-token-12"), Some("op-token-1234"), Some("")] {
        let response = get(&app, "/api/test-infrastructure", wrong).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
    let response = get(&app, "/api/test-infrastructure", Some("op-token-123")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    #[cfg(feature = "cache")]
    {
        assert_eq!(body["cache"]["ok"], true);
        assert!(body["cache"]["latency_ms"].is_number());
    }
    assert!(body.is_object());
}
