//! Health routes for axum: `GET /health` (every service) and `GET /health/live`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Infra;

/// Routes to merge into an app:
///
/// - `GET /health` runs [`Infra::test_all_connections`] and answers its JSON, with 200 when
///   no configured service is unhealthy and 503 otherwise (what load balancers expect);
/// - `GET /health/live` answers 200 without touching any backend (liveness).
///
/// ```no_run
/// # async fn demo() -> infra::Result<()> {
/// let infra = std::sync::Arc::new(infra::Infra::from_env()?);
/// let app: axum::Router = infra::http::health_routes(infra);
/// # Ok(()) }
/// ```
pub fn health_routes(infra: Arc<Infra>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .with_state(infra)
}

async fn health(State(infra): State<Arc<Infra>>) -> impl IntoResponse {
    let report = infra.test_all_connections().await;
    let status = if report.all_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

async fn live() -> &'static str {
    "ok"
}
