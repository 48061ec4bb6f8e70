//! A tower layer that rate-limits requests per key, with the standard headers.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use infra_cache::MemoryCache;
//! use infra_cache::tower_layer::RateLimitLayer;
//!
//! let limiter = Arc::new(MemoryCache::new(Default::default()));
//! let app: Router = Router::new()
//!     .route("/api/agent", get(|| async { "ok" }))
//!     .layer(RateLimitLayer::new(limiter, 10, Duration::from_secs(60)));
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use infra_core::{RateLimitDecision, RateLimiter};
use tower::{Layer, Service};

/// Longest key taken from a request; longer ones (a forged header) are cut, so a client can't
/// make its key invalid and slip past the limiter.
const MAX_KEY_BYTES: usize = 256;

/// Picks the key a request is counted under; `None` counts it under `anonymous`.
pub type KeyExtractor = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// Rate-limits requests: 429 with `Retry-After` when refused; every response carries
/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds).
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn RateLimiter>,
    limit: u64,
    window: Duration,
    key: KeyExtractor,
    scope: Arc<str>,
}

impl RateLimitLayer {
    /// `limit` requests per `window` per client IP.
    pub fn new(limiter: Arc<dyn RateLimiter>, limit: u64, window: Duration) -> Self {
        RateLimitLayer {
            limiter,
            limit,
            window,
            key: Arc::new(|parts| client_ip(parts).map(|ip| format!("ip:{ip}"))),
            scope: Arc::from("http"),
        }
    }

    /// Counts requests by `extract` (a user id, an API key) instead of the client IP.
    pub fn with_key(
        mut self,
        extract: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = Arc::new(extract);
        self
    }

    /// Names this limit, so two layers with the same keys count separately.
    pub fn with_scope(mut self, scope: &str) -> Self {
        self.scope = Arc::from(scope);
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] produces.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S, B, R> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: Default + Send,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready clone serves this call; a fresh clone waits for the next (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut key = (layer.key)(&parts).unwrap_or_else(|| "anonymous".into());
            truncate(&mut key, MAX_KEY_BYTES);
            let key = format!("{}:{key}", layer.scope);
            let decision = match layer.limiter.check(&key, layer.limit, layer.window).await {
                Ok(decision) => decision,
                Err(err) => {
                    tracing::error!(error = %err, "rate limiter failed; refusing the request");
                    let mut response = Response::new(R::default());
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    return Ok(response);
                }
            };
            if !decision.allowed {
                let mut response = Response::new(R::default());
                *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                let headers = response.headers_mut();
                headers.insert(http::header::RETRY_AFTER, seconds(decision.reset_after));
                put_headers(headers, &decision);
                return Ok(response);
            }
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            put_headers(response.headers_mut(), &decision);
            Ok(response)
        })
    }
}

fn put_headers(headers: &mut HeaderMap, decision: &RateLimitDecision) {
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", seconds(decision.reset_after));
}

/// Whole seconds, rounded up: a client waiting this long will be admitted.
fn seconds(d: Duration) -> HeaderValue {
    HeaderValue::from(d.as_millis().div_ceil(1000) as u64)
}

fn truncate(key: &mut String, max: usize) {
    if key.len() > max {
        let mut cut = max;
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        key.truncate(cut);
    }
}

/// The client's address: the first `X-Forwarded-For` entry, else the first `Forwarded`
/// `for=`, else the peer address axum recorded (`into_make_service_with_connect_info`).
///
/// Only trust forwarding headers behind a proxy that sets them; otherwise use
/// [`RateLimitLayer::with_key`].
pub fn client_ip(parts: &http::request::Parts) -> Option<String> {
    let first_forwarded_for = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|xff| xff.split(',').map(str::trim).find(|s| !s.is_empty()));
    if let Some(first) = first_forwarded_for {
        return Some(first.to_owned());
    }
    if let Some(fwd) = parts.headers.get("forwarded").and_then(|v| v.to_str().ok()) {
        let found = fwd
            .split([',', ';'])
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("for"))
            .map(|(_, v)| v.trim_matches('"').to_owned());
        if found.is_some() {
            return found;
        }
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string())
}
