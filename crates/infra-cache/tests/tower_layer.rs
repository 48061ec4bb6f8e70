//! The rate-limit layer in an axum app: 429 with Retry-After past the limit, the RateLimit
//! headers on every response, keys by client address (the peer, or what trusted proxies
//! forwarded) or a custom extractor, and the failure policy when Redis is unreachable.
#![cfg(feature = "tower")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use infra_cache::tower_layer::{RateLimitLayer, TrustedProxies};
use infra_cache::{MemoryCache, MemoryConfig};
use tower::ServiceExt;

fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
}

/// A request from `peer` (the address the server saw), as `http_server::serve` hands it on.
fn from_peer(peer: &str, forwarded_for: Option<&str>) -> Request<Body> {
    let mut request = Request::get("/");
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    let mut request = request.body(Body::empty()).unwrap();
    request.extensions_mut().insert(ConnectInfo(
        format!("{peer}:40000").parse::<SocketAddr>().unwrap(),
    ));
    request
}

fn request(ip: &str) -> Request<Body> {
    from_peer(ip, None)
}

#[tokio::test]
async fn limits_per_client_ip_with_headers() {
    let limiter = Arc::new(MemoryCache::new(MemoryConfig::default()));
    let app = app(RateLimitLayer::new(limiter, 2, Duration::from_secs(60)));
    for remaining in ["1", "0"] {
        let response = app.clone().oneshot(request("203.0.113.7")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-limit"], "2");
        assert_eq!(response.headers()["ratelimit-remaining"], remaining);
        assert!(response.headers().contains_key("ratelimit-reset"));
    }
    let refused = app.clone().oneshot(request("203.0.113.7")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");

    let other = app.clone().oneshot(request("198.51.100.1")).await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another client has its own budget"
    );

    // What the client writes in X-Forwarded-For changes nothing: its peer address counts.
    for forged in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        let response = app
            .clone()
            .oneshot(from_peer("203.0.113.7", Some(forged)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{forged}");
    }
}

#[tokio::test]
async fn behind_trusted_proxies_the_forwarded_client_counts() {
    let limiter = Arc::new(MemoryCache::new(MemoryConfig::default()));
    let layer = RateLimitLayer::new(limiter, 1, Duration::from_secs(60))
        .with_trusted_proxies(TrustedProxies::parse("10.0.0.0/8").unwrap());
    let app = app(layer);
    let via_proxy = |chain: &str| from_peer("10.0.0.1", Some(chain));
    assert_eq!(
        app.clone()
            .oneshot(via_proxy("203.0.113.7"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // The same client, with a forged entry of its own in front: still the same key.
    assert_eq!(
        app.clone()
            .oneshot(via_proxy("198.51.100.99, 203.0.113.7"))
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        app.clone()
            .oneshot(via_proxy("203.0.113.8"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "another client behind the proxy has its own budget"
    );
    // A peer outside the proxies' networks is counted by its own address.
    assert_eq!(
        app.oneshot(from_peer("198.51.100.4", Some("203.0.113.8")))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_unknown_client_address_is_refused_not_pooled() {
    let limiter = Arc::new(MemoryCache::new(MemoryConfig::default()));
    let app = app(RateLimitLayer::new(limiter, 100, Duration::from_secs(60)));
    // No ConnectInfo: the server did not say who the peer is.
    let anonymous = Request::get("/")
        .header("x-forwarded-for", "203.0.113.7")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.oneshot(anonymous).await.unwrap().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn custom_key_extractor_and_forged_long_keys() {
    let limiter = Arc::new(MemoryCache::new(MemoryConfig::default()));
    let layer = RateLimitLayer::new(limiter, 1, Duration::from_secs(60))
        .with_scope("agent")
        .with_key(|parts| {
            parts
                .headers
                .get("x-user-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    let app = app(layer);
    let as_user = |id: &str| {
        Request::get("/")
            .header("x-user-id", id)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.clone().oneshot(as_user("u1")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone().oneshot(as_user("u1")).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A 4 KiB forged key is cut, not refused as invalid — it is still counted.
    let long = "x".repeat(4096);
    assert_eq!(
        app.clone().oneshot(as_user(&long)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.oneshot(as_user(&long)).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// With Redis unreachable the layer answers by the limiter's failure policy, with headers.
#[tokio::test]
async fn redis_outage_follows_the_failure_policy() {
    use infra_cache::{FailurePolicy, RateLimitAlgorithm, RedisCache, RedisConfig};

    // A port nobody listens on: every call is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let limiter = |policy| {
        let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
            .with_command_timeout(Duration::from_millis(500))
            .with_failure_policy(policy);
        Arc::new(RedisCache::new(config, RateLimitAlgorithm::SlidingWindow).unwrap())
    };

    let closed = app(RateLimitLayer::new(
        limiter(FailurePolicy::Closed),
        5,
        Duration::from_secs(60),
    ));
    let refused = closed.oneshot(request("203.0.113.7")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    assert!(refused.headers().contains_key("retry-after"));

    let open = app(RateLimitLayer::new(
        limiter(FailurePolicy::Open),
        5,
        Duration::from_secs(60),
    ));
    let admitted = open.oneshot(request("203.0.113.7")).await.unwrap();
    assert_eq!(admitted.status(), StatusCode::OK);
    assert_eq!(admitted.headers()["ratelimit-limit"], "5");
}
