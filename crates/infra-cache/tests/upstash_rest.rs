//! `UpstashRestCache` against a stand-in serving Upstash's REST protocol over the real Redis
//! (each test in its own namespace): the conformance suites, tags, the key layout it shares
//! with `RedisCache`, one request per rate-limit decision with the `NOSCRIPT` fallback, a
//! refused token, an `{"error"}` reply, an outage, and `CacheService` picking it from the
//! environment.

mod support;

use std::sync::Arc;
use std::time::Duration;

use infra_cache::{
    CacheService, FailurePolicy, RateLimitAlgorithm, TaggedCache, UpstashConfig, UpstashRestCache,
};
use infra_core::{Cache, Env, ErrorKind, HealthCheck, HealthStatus, RateLimiter, testkit};
use support::own_redis::{OwnRedis, spare_port};
use support::upstash_stand_in::StandIn;

const TOKEN: &str = "AXtest-rest-token-0123456789";

fn upstash(stand_in: &StandIn, prefix: &str, algorithm: RateLimitAlgorithm) -> UpstashRestCache {
    let config = UpstashConfig::new(&stand_in.url, TOKEN)
        .unwrap()
        .with_key_prefix(prefix)
        .with_command_timeout(Duration::from_secs(2));
    UpstashRestCache::new(config, algorithm).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_cache_suite() {
    let stand_in = StandIn::start(&support::redis_url(), TOKEN).await;
    let prefix = support::namespace("upstash-cache-suite");
    let cache = Arc::new(upstash(&stand_in, &prefix, RateLimitAlgorithm::default()));
    testkit::cache::run_all(cache).await;
    assert_eq!(
        support::cleanup(&support::redis_cache_with_prefix(&prefix)).await,
        0,
        "the suite leaves nothing behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_rate_limit_suite_with_every_algorithm() {
    let stand_in = StandIn::start(&support::redis_url(), TOKEN).await;
    for algorithm in RateLimitAlgorithm::ALL {
        let prefix = support::namespace(&format!("upstash-rl-{}", algorithm.as_str()));
        let cache = Arc::new(upstash(&stand_in, &prefix, algorithm));
        testkit::rate_limit::run_all(cache).await;
        support::cleanup(&support::redis_cache_with_prefix(&prefix)).await;
    }
}

#[tokio::test]
async fn binary_batches_and_tags_round_trip_in_the_layout_redis_cache_reads() {
    let stand_in = StandIn::start(&support::redis_url(), TOKEN).await;
    let prefix = support::namespace("upstash-layout");
    let cache = upstash(&stand_in, &prefix, RateLimitAlgorithm::default());
    let redis = support::redis_cache_with_prefix(&prefix);
    let ttl = Duration::from_secs(60);

    // Not UTF-8: travels in hex to a script, comes back through base64.
    let binary: Vec<u8> = vec![0xff, 0x00, 0xc3, 0x28, b'{'];
    cache
        .set_many(
            vec![
                ("a".into(), binary.clone()),
                ("b".into(), b"{\"x\":1}".to_vec()),
            ],
            ttl,
        )
        .await
        .unwrap();
    assert_eq!(
        cache
            .get_many(&["a".into(), "missing".into(), "b".into()])
            .await
            .unwrap(),
        vec![Some(binary.clone()), None, Some(b"{\"x\":1}".to_vec())]
    );
    assert_eq!(
        redis.get("a").await.unwrap(),
        Some(binary.clone()),
        "RedisCache reads the same key"
    );

    cache
        .set_tagged("prefs:1", &binary, ttl, &["user:1"])
        .await
        .unwrap();
    cache
        .set_tagged("dash:1", b"d", ttl, &["user:1", "team:1"])
        .await
        .unwrap();
    assert_eq!(cache.get("prefs:1").await.unwrap(), Some(binary));
    assert_eq!(
        redis.invalidate_tag("team:1").await.unwrap(),
        1,
        "RedisCache sees the tag sets"
    );
    assert_eq!(cache.invalidate_tag("user:1").await.unwrap(), 1);
    assert!(!cache.exists("prefs:1").await.unwrap());
    assert_eq!(cache.delete_prefix("a").await.unwrap(), 1);
    assert!(cache.delete("b").await.unwrap());
    assert_eq!(support::cleanup(&redis).await, 0);
}

#[tokio::test]
async fn a_decision_is_one_request_and_noscript_falls_back_to_eval() {
    // A private Redis starts with an empty script cache: the first EVALSHA meets NOSCRIPT.
    let server = OwnRedis::start(spare_port());
    let stand_in = StandIn::start(&format!("redis://127.0.0.1:{}", server.port), TOKEN).await;
    let cache = upstash(&stand_in, "rl:", RateLimitAlgorithm::SlidingWindow);
    let window = Duration::from_secs(60);

    let first = RateLimiter::check(&cache, "ip:1", 3, window).await.unwrap();
    assert!(first.allowed && !first.fallback && first.remaining == 2);
    assert_eq!(stand_in.received(), ["EVALSHA", "EVAL"]);

    for remaining in [1, 0] {
        let d = RateLimiter::check(&cache, "ip:1", 3, window).await.unwrap();
        assert_eq!((d.allowed, d.remaining), (true, remaining));
    }
    assert!(
        !RateLimiter::check(&cache, "ip:1", 3, window)
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(
        stand_in.received(),
        ["EVALSHA", "EVAL", "EVALSHA", "EVALSHA", "EVALSHA"],
        "EVAL cached the script: one request per decision afterwards"
    );
}

#[tokio::test]
async fn a_refused_token_is_a_config_error_naming_the_token_variable() {
    let stand_in = StandIn::start(&support::redis_url(), TOKEN).await;
    let config = UpstashConfig::new(&stand_in.url, "wrong-token-secret").unwrap();
    let cache = UpstashRestCache::new(config, RateLimitAlgorithm::default()).unwrap();

    let err = cache.get("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.variable(), Some("UPSTASH_REDIS_REST_TOKEN"));
    assert_eq!(err.context("http_status"), Some("401"));
    assert!(!err.is_retryable());
    for printed in [
        err.to_string(),
        format!("{err:?}"),
        format!("{:?}", cache.config()),
    ] {
        assert!(!printed.contains("wrong-token-secret"), "{printed}");
    }
    // Not an outage: the rate limiter reports it instead of applying its failure policy.
    let err = RateLimiter::check(&cache, "ip", 1, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.variable(), Some("UPSTASH_REDIS_REST_TOKEN"));
    let report = HealthCheck::check(&cache).await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(
        report.detail.contains("UPSTASH_REDIS_REST_TOKEN"),
        "{}",
        report.detail
    );
}

#[tokio::test]
async fn an_error_reply_keeps_the_redis_code() {
    let stand_in = StandIn::start(&support::redis_url(), TOKEN).await;
    let prefix = support::namespace("upstash-error");
    let cache = upstash(&stand_in, &prefix, RateLimitAlgorithm::default());
    cache
        .set_tagged("k", b"v", Duration::from_secs(60), &["t"])
        .await
        .unwrap();
    // The tag set is a Redis set: GET on it is refused by Redis, relayed as {"error"}.
    let err = cache
        .get(&format!("{}t", infra_cache::TAG_KEY_PREFIX))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend);
    assert_eq!(err.context("redis_code"), Some("WRONGTYPE"));
    assert!(err.to_string().contains("upstash GET"), "{err}");
    support::cleanup(&support::redis_cache_with_prefix(&prefix)).await;
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_and_the_limiter_follows_its_policy() {
    let url = format!("http://127.0.0.1:{}", spare_port());
    let config = UpstashConfig::new(&url, TOKEN)
        .unwrap()
        .with_command_timeout(Duration::from_millis(500))
        .with_failure_policy(FailurePolicy::Closed);
    let cache = UpstashRestCache::new(config, RateLimitAlgorithm::default()).unwrap();
    let err = cache.get("k").await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let d = RateLimiter::check(&cache, "ip", 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(d.fallback && !d.allowed, "fail-closed while down");
    assert_eq!(
        HealthCheck::check(&cache).await.status,
        HealthStatus::Unhealthy
    );
}

#[tokio::test]
async fn service_picks_upstash_for_the_rest_url() {
    let stand_in = StandIn::start(&support::redis_url(), TOKEN).await;
    let prefix = support::namespace("upstash-service");
    let env = Env::from_pairs([
        ("UPSTASH_REDIS_REST_URL", stand_in.url.clone()),
        ("UPSTASH_REDIS_REST_TOKEN", TOKEN.into()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
    ]);
    let service = CacheService::from_env(&env).unwrap();
    assert_eq!(service.backend(), "upstash");
    let report = service.health().check().await;
    assert_eq!(
        (report.backend.as_str(), report.status),
        ("upstash", HealthStatus::Healthy),
        "{}",
        report.detail
    );
    assert!(report.detail.contains("keys"), "{}", report.detail);
    assert!(!report.detail.contains(TOKEN));
    let d = service
        .rate_limiter()
        .check("ip", 2, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(d.allowed && !d.fallback);
    assert!(
        support::cleanup(&support::redis_cache_with_prefix(&prefix)).await > 0,
        "the decision was stored under the prefix; the probe key was not left"
    );
}

#[tokio::test]
async fn a_stalled_endpoint_times_out_instead_of_hanging() {
    // The kernel completes the TCP handshake into the backlog; nobody ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let config = UpstashConfig::new(&url, TOKEN)
        .unwrap()
        .with_command_timeout(Duration::from_millis(300));
    let cache = UpstashRestCache::new(config, RateLimitAlgorithm::default()).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), cache.get("k"))
        .await
        .expect("bounded by the command timeout, not hanging")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(err.to_string().contains("upstash GET"), "{err}");
    let d = RateLimiter::check(&cache, "ip", 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(d.fallback && d.allowed, "fail-open by default");
}
