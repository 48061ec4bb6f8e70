//! The app's HTTP surface for its infrastructure, as axum routers.
//!
//! [`Infra::router`] merges every part; each part is also a function of its own, so an app
//! mounts only what it wants:
//!
//! | route | part | what |
//! |---|---|---|
//! | `GET /api/health` | [`liveness_routes`] | 200 while the process serves; touches no backend |
//! | `GET /api/health/ready` | [`readiness_routes`] | one report per service; 503 when a configured one is unhealthy |
//! | `GET /api/test-infrastructure` | [`admin_routes`] | the full [`Infra::test_all_connections`] report, behind `INFRA_ADMIN_TOKEN` |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use infra_core::Secret;
use serde::Serialize;

use crate::Infra;

/// Liveness path: answers while the process serves.
pub const LIVENESS_PATH: &str = "/api/health";
/// Readiness path: every service's status.
pub const READINESS_PATH: &str = "/api/health/ready";
/// The seed's test endpoint: the full connection report, for operators.
pub const TEST_INFRASTRUCTURE_PATH: &str = "/api/test-infrastructure";

impl Infra {
    /// Every route of this module, built from this `Infra` (and its `INFRA_ADMIN_TOKEN`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let infra = std::sync::Arc::new(infra::Infra::from_env()?);
    /// infra.start().await?;
    /// let app: axum::Router = infra.router();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app).await?;
    /// # Ok(()) }
    /// ```
    pub fn router(self: &Arc<Self>) -> Router {
        liveness_routes()
            .merge(readiness_routes(Arc::clone(self)))
            .merge(admin_routes(Arc::clone(self), self.admin_token().cloned()))
    }
}

/// `GET /api/health`: 200 `{"status":"ok"}` without touching any backend, so an orchestrator
/// restarts the process only when the process itself is stuck.
pub fn liveness_routes() -> Router {
    Router::new().route(LIVENESS_PATH, get(live))
}

/// `GET /api/health/ready`: `{ "ready": bool, "services": { name: { ok, status, backend } } }`,
/// 200 when no configured service is unhealthy, 503 otherwise (what a load balancer expects).
/// Services built in but not configured report `not_configured` and don't fail readiness.
pub fn readiness_routes(infra: Arc<Infra>) -> Router {
    Router::new()
        .route(READINESS_PATH, get(ready))
        .with_state(infra)
}

/// `GET /api/test-infrastructure`: the full [`Infra::test_all_connections`] report (status,
/// latency and detail per service).
///
/// The report names hosts and versions, so it is for operators only: without a token the
/// route answers 404 as if it did not exist; with one, a request must carry
/// `Authorization: Bearer <token>` (compared in constant time) or gets 401.
pub fn admin_routes(infra: Arc<Infra>, token: Option<Secret<String>>) -> Router {
    Router::new()
        .route(TEST_INFRASTRUCTURE_PATH, get(test_infrastructure))
        .with_state(AdminState {
            infra,
            token: token.map(Arc::new),
        })
}

#[derive(Clone)]
struct AdminState {
    infra: Arc<Infra>,
    token: Option<Arc<Secret<String>>>,
}

async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[derive(Serialize)]
struct Readiness<'a> {
    ready: bool,
    services: BTreeMap<&'a str, ServiceReadiness<'a>>,
}

#[derive(Serialize)]
struct ServiceReadiness<'a> {
    ok: bool,
    status: &'static str,
    backend: &'a str,
}

async fn ready(State(infra): State<Arc<Infra>>) -> Response {
    let report = infra.test_all_connections().await;
    let body = Readiness {
        ready: report.all_ok(),
        services: report
            .services
            .iter()
            .map(|r| {
                (
                    r.service.as_str(),
                    ServiceReadiness {
                        ok: r.is_ok(),
                        status: r.status.as_str(),
                        backend: r.backend.as_str(),
                    },
                )
            })
            .collect(),
    };
    (status_of(body.ready), Json(&body)).into_response()
}

async fn test_infrastructure(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let Some(token) = state.token.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !bearer_matches(&headers, token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": "a valid bearer token is required" })),
        )
            .into_response();
    }
    let report = state.infra.test_all_connections().await;
    (status_of(report.all_ok()), Json(report)).into_response()
}

fn bearer_matches(headers: &HeaderMap, token: &Secret<String>) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|presented| token.matches(presented.trim()))
}

fn status_of(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
