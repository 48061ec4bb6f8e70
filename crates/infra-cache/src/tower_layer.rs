//! A tower layer that rate-limits requests per key, with the standard headers.
//!
//! By default the key is the client's address: the socket's peer, which the server must put
//! on each request as `axum::extract::ConnectInfo<SocketAddr>` (`infra::Infra::serve` and
//! `infra_core::http_server::serve` do; with `axum::serve`, use
//! `into_make_service_with_connect_info::<SocketAddr>()`). Behind proxies, name them with
//! [`RateLimitLayer::with_trusted_proxies`] (`INFRA_TRUSTED_PROXIES`) and `X-Forwarded-For`
//! is read as they wrote it; a client's own `X-Forwarded-For` is never believed. A request
//! whose address is unknown is refused with 500 and an error log, rather than counted in one
//! bucket shared by every client.
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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use infra_core::{RateLimitDecision, RateLimiter};
use tower::{Layer, Service};

pub use crate::trusted_proxies::{TRUSTED_PROXIES_VAR, TrustedProxies};

/// Longest key taken from a request; longer ones (a forged header) are cut, so a client can't
/// make its key invalid and slip past the limiter.
const MAX_KEY_BYTES: usize = 256;

/// Picks the key a request is counted under; `None` counts it under `anonymous`.
pub type KeyExtractor = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// What a request is counted by.
#[derive(Clone)]
enum KeySource {
    /// The client's address, as the trusted proxies allow it to be known.
    ClientAddress {
        proxies: TrustedProxies,
        /// Set once the missing peer address has been logged as an error.
        reported: Arc<AtomicBool>,
    },
    /// The app's own extractor.
    Custom(KeyExtractor),
}

/// Rate-limits requests: 429 with `Retry-After` when refused; every response carries
/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds).
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn RateLimiter>,
    limit: u64,
    window: Duration,
    key: KeySource,
    scope: Arc<str>,
}

impl RateLimitLayer {
    /// `limit` requests per `window` per client address (the socket's peer; see
    /// [`with_trusted_proxies`](RateLimitLayer::with_trusted_proxies) behind proxies).
    pub fn new(limiter: Arc<dyn RateLimiter>, limit: u64, window: Duration) -> Self {
        RateLimitLayer {
            limiter,
            limit,
            window,
            key: KeySource::ClientAddress {
                proxies: TrustedProxies::None,
                reported: Arc::new(AtomicBool::new(false)),
            },
            scope: Arc::from("http"),
        }
    }

    /// Takes the client's address from `X-Forwarded-For` as `proxies` allow (and the peer
    /// address otherwise), instead of the peer address alone. Replaces a
    /// [`with_key`](RateLimitLayer::with_key) extractor.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.key = KeySource::ClientAddress {
            proxies,
            reported: Arc::new(AtomicBool::new(false)),
        };
        self
    }

    /// Counts requests by `extract` (a user id, an API key) instead of the client address;
    /// requests it gives no key share the `anonymous` one.
    pub fn with_key(
        mut self,
        extract: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = KeySource::Custom(Arc::new(extract));
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
            let mut key = match &layer.key {
                KeySource::Custom(extract) => extract(&parts).unwrap_or_else(|| "anonymous".into()),
                KeySource::ClientAddress { proxies, reported } => match proxies.client_ip(&parts) {
                    Some(ip) => format!("ip:{ip}"),
                    None => {
                        if !reported.swap(true, Ordering::Relaxed) {
                            tracing::error!(
                                "rate limit: the client's address is unknown (no ConnectInfo on \
                                 the request); serve with infra::Infra::serve, \
                                 infra_core::http_server::serve, or axum's \
                                 into_make_service_with_connect_info; refusing requests rather \
                                 than counting every client under one key"
                            );
                        }
                        let mut response = Response::new(R::default());
                        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        return Ok(response);
                    }
                },
            };
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
