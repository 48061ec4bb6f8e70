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
    let infra = Arc::new(Infra::from_env(&Env::from_pairs(pairs.iter().copied())).unwrap());
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

#[cfg(feature = "jobs")]
#[tokio::test]
async fn inngest_serve_is_mounted_when_the_jobs_run_on_inngest() {
    let app = router(&[("INNGEST_DEV", "1"), ("INNGEST_APP_ID", "calendar-agent")]).await;
    let response = get(&app, "/api/inngest", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-inngest-sdk"));
    // Without Inngest the route does not exist.
    let app = router(&[]).await;
    assert_eq!(
        get(&app, "/api/inngest", None).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[cfg(feature = "jobs")]
#[tokio::test]
async fn ingestion_is_mounted_with_keys_and_enqueues_into_the_runtime() {
    let app = router(&[("INFRA_JOBS_INGEST_KEYS", "key-1")]).await;
    let send = |key: &'static str| {
        let app = app.clone();
        async move {
            app.oneshot(
                Request::post(format!("/e/{key}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"name":"app/probe.sent","data":{"n":1}}"#))
                    .unwrap(),
            )
            .await
            .unwrap()
        }
    };
    let accepted = send("key-1").await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let body = json(accepted).await;
    assert_eq!(body["ids"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(send("key-2").await.status(), StatusCode::UNAUTHORIZED);
}

#[cfg(feature = "realtime")]
#[tokio::test]
async fn the_embedded_realtime_server_and_the_auth_endpoint_share_the_apps_port() {
    use infra::realtime::{AuthRequest, Authorizer, ChannelDecision};

    struct OwnChannelOnly;
    #[infra::async_trait]
    impl Authorizer for OwnChannelOnly {
        async fn authorize_channel(
            &self,
            _request: &AuthRequest,
            channel: &infra::ChannelName,
        ) -> infra::Result<ChannelDecision> {
            Ok(if channel.as_str() == "private-user-1" {
                ChannelDecision::Allow
            } else {
                ChannelDecision::deny("not yours")
            })
        }
    }

    let infra = Arc::new(Infra::from_env(&Env::empty()).unwrap());
    let app = infra.routes().authorizer(Arc::new(OwnChannelOnly)).build();
    let auth = |channel: &'static str| {
        let app = app.clone();
        async move {
            app.oneshot(
                Request::post("/api/pusher/auth")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(format!(
                        "socket_id=123.456&channel_name={channel}"
                    )))
                    .unwrap(),
            )
            .await
            .unwrap()
        }
    };
    let allowed = auth("private-user-1").await;
    assert_eq!(allowed.status(), StatusCode::OK);
    let key = infra.realtime().credentials().key.clone();
    let body = json(allowed).await;
    assert!(
        body["auth"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{key}:")),
        "{body}"
    );
    assert_eq!(auth("private-user-2").await.status(), StatusCode::FORBIDDEN);
    // The embedded server's HTTP API is mounted too: an unsigned call is refused, not 404.
    let id = infra.realtime().credentials().app_id.clone();
    let unsigned = get(&app, &format!("/apps/{id}/channels"), None).await;
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
}
