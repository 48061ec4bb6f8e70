//! The app's HTTP surface for its infrastructure, as axum routers.
//!
//! [`Infra::router`] merges every part; each part is also a function of its own, so an app
//! mounts only what it wants:
//!
//! | route | part | what |
//! |---|---|---|
//! | `GET /api/health` | [`liveness_routes`] | 200 while the process serves; touches no backend |
//! | `GET /api/health/ready` | [`readiness_routes`] | one cheap, coalesced report per service; 503 when a configured one is unhealthy |
//! | `GET /api/test-infrastructure` | [`admin_routes`] | the full [`Infra::check`] report, behind `INFRA_ADMIN_TOKEN` |
//! | `POST /api/pusher/auth`, `POST /api/pusher/user-auth` | [`InfraRoutes::authorizer`] | channel authorization and sign-in with the app's `Authorizer` (feature `realtime`) |
//! | `/app/{key}`, `/apps/{id}/…` | the embedded realtime server | pusher-js and the Pusher HTTP API on the app's own port, when realtime runs embedded |
//! | `GET/PUT/POST /api/inngest` | `infra_jobs::serve_router` | the functions served to Inngest, when the jobs run on Inngest (`INNGEST_APP_ID` names the app) |
//! | `POST /e/{event_key}` | `infra_jobs::ingest_router` | Inngest-compatible ingestion into the jobs runtime, when `INFRA_JOBS_INGEST_KEYS` is set |
//!
//! Around them, [`InfraRoutes`] puts the Sentry request layers (a hub per request, 5xx
//! captured; on by default with `monitoring`) and, when asked, a rate limit on the API routes.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use infra_core::http_server;
use infra_core::{Result, Secret};
use tokio::net::TcpListener;

use crate::Infra;

/// Liveness path: answers while the process serves.
pub const LIVENESS_PATH: &str = "/api/health";
/// Readiness path: every service's status.
pub const READINESS_PATH: &str = "/api/health/ready";
/// The TypeScript module's test endpoint: the full connection report, for operators.
pub const TEST_INFRASTRUCTURE_PATH: &str = "/api/test-infrastructure";

impl Infra {
    /// Every route of this module with the defaults: `self.routes().build()`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let infra = std::sync::Arc::new(infra::Infra::from_env(&infra::Env::process())?);
    /// infra.start().await?;
    /// let app: axum::Router = infra.router();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// infra.serve(listener, app, std::future::pending()).await?; // or a shutdown signal
    /// # Ok(()) }
    /// ```
    pub fn router(self: &Arc<Self>) -> Router {
        self.routes().build()
    }

    /// Serves `router` (this router, or the app's own with it merged in) on `listener` until
    /// `shutdown` completes, with the limits of `INFRA_HTTP_HEADER_READ_TIMEOUT`,
    /// `INFRA_HTTP_IDLE_TIMEOUT` and `INFRA_HTTP_MAX_BODY_BYTES` on every connection and the
    /// peer's address on every request (which the rate limit keys on). Use it instead of
    /// `axum::serve`, which has no header-read timeout; see [`infra_core::http_server`].
    pub async fn serve<F>(&self, listener: TcpListener, router: Router, shutdown: F) -> Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        http_server::serve(listener, router, self.http_server_config(), shutdown).await
    }

    /// A builder of the router, to add the app's realtime authorizer, a rate limit, or to
    /// leave out the Sentry request layers.
    pub fn routes(self: &Arc<Self>) -> InfraRoutes {
        InfraRoutes {
            infra: Arc::clone(self),
            #[cfg(feature = "realtime")]
            authorizer: None,
            #[cfg(feature = "cache")]
            rate_limit: None,
            #[cfg(feature = "monitoring")]
            monitoring_layers: true,
        }
    }
}

/// Builds the umbrella's router: [`Infra::routes`], then options, then [`InfraRoutes::build`].
///
/// ```no_run
/// # async fn demo(authorizer: std::sync::Arc<dyn infra::realtime::Authorizer>) -> infra::Result<()> {
/// use std::time::Duration;
/// let infra = std::sync::Arc::new(infra::Infra::from_env(&infra::Env::process())?);
/// let app: axum::Router = infra
///     .routes()
///     .authorizer(authorizer)                    // POST /api/pusher/auth, /api/pusher/user-auth
///     .rate_limit(120, Duration::from_secs(60))  // per client IP, on the API routes
///     .build();
/// # Ok(()) }
/// ```
pub struct InfraRoutes {
    infra: Arc<Infra>,
    #[cfg(feature = "realtime")]
    authorizer: Option<Arc<dyn infra_realtime::Authorizer>>,
    #[cfg(feature = "cache")]
    rate_limit: Option<(u64, std::time::Duration)>,
    #[cfg(feature = "monitoring")]
    monitoring_layers: bool,
}

impl InfraRoutes {
    /// Serves the Pusher auth endpoints, asking `authorizer` who may join which channel and
    /// signing with the realtime backend's app credentials (Pusher's or the embedded
    /// server's).
    #[cfg(feature = "realtime")]
    #[cfg_attr(docsrs, doc(cfg(feature = "realtime")))]
    pub fn authorizer(mut self, authorizer: Arc<dyn infra_realtime::Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// At most `limit` requests per `window` and client address on the API routes (auth,
    /// ingestion), through the cache's rate limiter; health routes and the realtime server
    /// are left out. The client is the socket's peer, or what the proxies of
    /// `INFRA_TRUSTED_PROXIES` forwarded; a client's own `X-Forwarded-For` is ignored. Serve
    /// with [`Infra::serve`] (or axum's `into_make_service_with_connect_info::<SocketAddr>()`)
    /// so the peer's address is known: without it requests are refused with 500.
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    pub fn rate_limit(mut self, limit: u64, window: std::time::Duration) -> Self {
        self.rate_limit = Some((limit, window));
        self
    }

    /// Leaves out the request layers (on by default): Sentry's (a transaction per request)
    /// and the local sink's request spans.
    #[cfg(feature = "monitoring")]
    #[cfg_attr(docsrs, doc(cfg(feature = "monitoring")))]
    pub fn without_monitoring_layers(mut self) -> Self {
        self.monitoring_layers = false;
        self
    }

    /// The router.
    pub fn build(self) -> Router {
        let infra = &self.infra;
        // Routes a client calls with a payload: what the rate limit guards.
        #[allow(unused_mut)] // empty without realtime and jobs
        let mut api = Router::new();
        #[cfg(feature = "realtime")]
        if let Some(authorizer) = self.authorizer.clone() {
            let credentials = infra.realtime().credentials().clone();
            api = api.merge(infra_realtime::auth_router(credentials, authorizer));
        }
        #[cfg(feature = "jobs")]
        if let Some(config) = infra.inngest_serve_config() {
            match infra_jobs::serve_router(infra.jobs().clone(), config.clone()) {
                Ok(serve) => api = api.merge(serve),
                // Only a broken TLS setup makes the HTTP client fail to build.
                Err(err) => tracing::error!(error = %err, "cannot serve /api/inngest"),
            }
        }
        #[cfg(feature = "jobs")]
        if let Some(ingest) = infra.ingest_config() {
            api = api.merge(infra_jobs::ingest_router(
                infra.jobs().events(),
                ingest.clone(),
            ));
        }
        #[cfg(feature = "cache")]
        if let Some((limit, window)) = self.rate_limit {
            api = api.layer(
                infra_cache::tower_layer::RateLimitLayer::new(
                    infra.cache().rate_limiter(),
                    limit,
                    window,
                )
                .with_trusted_proxies(infra.trusted_proxies().clone()),
            );
        }
        #[allow(unused_mut)]
        let mut router = liveness_routes()
            .merge(readiness_routes(Arc::clone(infra)))
            .merge(admin_routes(
                Arc::clone(infra),
                infra.admin_token().cloned(),
            ))
            .merge(api);
        #[cfg(feature = "realtime")]
        if let Some(server) = infra.realtime().server() {
            router = router.merge(server.router());
        }
        #[cfg(feature = "monitoring")]
        if self.monitoring_layers {
            let (hub, http, server_errors) = infra_monitoring::request_layers();
            router = router
                .layer(infra.monitoring().local_request_spans())
                .layer(server_errors)
                .layer(http)
                .layer(hub);
        }
        router
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
///
/// Unauthenticated, so cheap: each service's [`HealthCheck::ping`](infra_core::HealthCheck::ping)
/// (a `PING`, a `SELECT 1`, local state; for Pusher, whose client has no cheaper check, its
/// channels query), one report in flight at a time and its answer reused
/// for `INFRA_READINESS_CACHE_TTL` (default 2s). The end-to-end probes are
/// [`admin_routes`]'.
pub fn readiness_routes(infra: Arc<Infra>) -> Router {
    Router::new()
        .route(READINESS_PATH, get(crate::readiness::ready))
        .with_state(Arc::new(crate::readiness::ReadinessCache::new(infra)))
}

/// `GET /api/test-infrastructure`: the full [`Infra::check`] report (status,
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
    let report = state.infra.check().await;
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
