//! Tag-based invalidation on every backend (the Redis ones against the real Redis and a Redis
//! Cluster of the test's own, their tag sets checked with Redis's own PTTL), and
//! `CacheService` picking a backend from the environment with a health detail that carries
//! memory and key-count figures.

mod support;

use std::time::Duration;

use infra_cache::{
    CacheService, MemoryCache, MemoryConfig, RateLimitAlgorithm, TAG_KEY_PREFIX, TaggedCache,
    TaggedCacheExt,
};
use infra_core::{CacheExt, CacheLimits, Env, ErrorKind, HealthCheck, HealthStatus};

/// Every backend: invalidating a tag removes exactly the keys written with it.
async fn tag_suite(cache: &dyn TaggedCache) {
    let ttl = Duration::from_secs(60);
    cache
        .set_tagged("prefs:1", b"p", ttl, &["user:1"])
        .await
        .unwrap();
    cache
        .set_json_tagged("dash:1", &vec![1, 2], ttl, &["user:1", "team:9"])
        .await
        .unwrap();
    cache
        .set_tagged("dash:2", b"d", ttl, &["team:9"])
        .await
        .unwrap();
    cache.set("untagged", b"u", ttl).await.unwrap();
    assert_eq!(
        cache.get_json::<Vec<u8>>("dash:1").await.unwrap(),
        Some(vec![1, 2])
    );

    assert_eq!(cache.invalidate_tag("user:1").await.unwrap(), 2);
    assert!(!cache.exists("prefs:1").await.unwrap());
    assert!(!cache.exists("dash:1").await.unwrap());
    assert!(cache.exists("dash:2").await.unwrap(), "other tags survive");
    assert!(
        cache.exists("untagged").await.unwrap(),
        "untagged keys survive"
    );
    assert_eq!(
        cache.invalidate_tag("team:9").await.unwrap(),
        1,
        "keys already gone are not counted"
    );
    assert_eq!(
        cache.invalidate_tag("user:1").await.unwrap(),
        0,
        "a tag is forgotten"
    );
    assert_eq!(cache.invalidate_tag("never-used").await.unwrap(), 0);

    // A key tagged again after an invalidation belongs to the tag again.
    cache
        .set_tagged("prefs:1", b"p2", ttl, &["user:1"])
        .await
        .unwrap();
    assert_eq!(cache.invalidate_tag("user:1").await.unwrap(), 1);

    // Bad input names the field and writes nothing.
    let err = cache.invalidate_tag("").await.unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::InvalidInput, Some("tag"))
    );
    let err = cache
        .set_tagged("k", b"v", ttl, &["ok", &"t".repeat(300)])
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("tag"));
    assert!(
        !cache.exists("k").await.unwrap(),
        "a refused write stores nothing"
    );
    let err = cache
        .set_tagged("k", b"v", Duration::ZERO, &["ok"])
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("ttl"));

    // More members than one SSCAN page.
    let pairs: Vec<String> = (0..1500).map(|i| format!("bulk:{i}")).collect();
    for key in &pairs {
        cache.set_tagged(key, b"x", ttl, &["bulk"]).await.unwrap();
    }
    assert_eq!(cache.invalidate_tag("bulk").await.unwrap(), 1500);
    assert!(!cache.exists("bulk:0").await.unwrap());
    assert!(!cache.exists("bulk:1499").await.unwrap());
    cache.delete("untagged").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_invalidates_by_tag() {
    tag_suite(&MemoryCache::new(MemoryConfig::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_invalidates_by_tag_and_leaves_nothing_behind() {
    let cache = support::redis_cache("tags", RateLimitAlgorithm::default());
    tag_suite(&cache).await;
    assert_eq!(
        support::cleanup(&cache).await,
        0,
        "no tag set or key is left behind"
    );
}

#[cfg(feature = "redis-cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_invalidates_by_tag_and_leaves_nothing_behind() {
    let cache = support::cluster::cache("tags", RateLimitAlgorithm::default());
    tag_suite(&cache).await;
    assert_eq!(
        support::cluster::cleanup(support::cluster::shared(), &cache).await,
        0,
        "no tag set or key is left behind, on any master"
    );
}

#[cfg(feature = "redis-cluster")]
#[tokio::test]
async fn redis_cluster_tag_sets_are_hash_tagged_and_live_as_long_as_their_longest_key() {
    let shared = support::cluster::shared();
    let cache = support::cluster::cache("tag-ttl", RateLimitAlgorithm::default());
    cache
        .set_tagged("long", b"v", Duration::from_secs(50), &["t"])
        .await
        .unwrap();
    cache
        .set_tagged("short", b"v", Duration::from_secs(5), &["t"])
        .await
        .unwrap();
    let set = format!("{}{TAG_KEY_PREFIX}{{t}}", cache.config().key_prefix);
    let slot = shared.key_slot(&set).unwrap();
    assert_eq!(
        slot,
        shared.key_slot("t").unwrap(),
        "the tag set's slot is its tag's"
    );
    let mut raw = support::cluster::node(shared, shared.master_of(slot).unwrap()).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&set)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(pttl > 45_000 && pttl <= 50_000, "tag set PTTL {pttl}");
    let members: u64 = redis::cmd("SCARD")
        .arg(&set)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(members, 2);
    assert_eq!(cache.invalidate_tag("t").await.unwrap(), 2);
    assert_eq!(support::cluster::cleanup(shared, &cache).await, 0);
}

#[tokio::test]
async fn redis_tag_sets_live_as_long_as_their_longest_key() {
    let cache = support::redis_cache("tag-ttl", RateLimitAlgorithm::default());
    cache
        .set_tagged("long", b"v", Duration::from_secs(50), &["t"])
        .await
        .unwrap();
    cache
        .set_tagged("short", b"v", Duration::from_secs(5), &["t"])
        .await
        .unwrap();
    let set = format!("{}{TAG_KEY_PREFIX}t", cache.config().key_prefix);
    let mut raw = support::raw().await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&set)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(pttl > 45_000 && pttl <= 50_000, "tag set PTTL {pttl}");
    let members: u64 = redis::cmd("SCARD")
        .arg(&set)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(members, 2);
    assert_eq!(cache.invalidate_tag("t").await.unwrap(), 2);
    assert_eq!(support::cleanup(&cache).await, 0);
}

#[tokio::test]
async fn service_picks_memory_without_redis_url() {
    let service = CacheService::from_env(&Env::empty()).unwrap();
    assert_eq!(service.backend(), "memory");
    service
        .cache()
        .set("k", b"v", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        service.tagged().exists("k").await.unwrap(),
        "one store behind both"
    );
    let report = service.health().check().await;
    assert_eq!(
        (
            report.service.as_str(),
            report.backend.as_str(),
            report.status
        ),
        ("cache", "memory", HealthStatus::Healthy)
    );
    assert!(report.detail.contains("1 keys"), "{}", report.detail);
    assert!(
        service
            .rate_limiter()
            .check("ip", 1, Duration::from_secs(1))
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn the_service_invalidates_by_tag_itself() {
    let service = CacheService::from_env(&Env::empty()).unwrap();
    tag_suite(&service).await;
}

#[tokio::test]
async fn service_picks_redis_with_redis_url() {
    let prefix = support::namespace("service");
    let env = Env::from_pairs([
        ("REDIS_URL", support::redis_url()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
        ("INFRA_RATE_LIMIT_ALGORITHM", "token_bucket".into()),
    ]);
    let service = CacheService::from_env(&env).unwrap();
    assert_eq!(service.backend(), "redis");
    let report = service.health().check().await;
    assert_eq!(
        (
            report.service.as_str(),
            report.backend.as_str(),
            report.status
        ),
        ("cache", "redis", HealthStatus::Healthy),
        "{}",
        report.detail
    );
    assert!(report.detail.contains("used_memory"), "{}", report.detail);
    assert!(report.detail.contains("keys"), "{}", report.detail);
    let decision = service
        .rate_limiter()
        .check("ip", 2, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(decision.allowed && !decision.fallback);
    let cleanup = support::redis_cache_with_prefix(&prefix);
    assert!(
        support::cleanup(&cleanup).await > 0,
        "the decision was stored under the prefix"
    );
}

#[cfg(feature = "redis-cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_picks_redis_cluster_with_cluster_nodes() {
    let shared = support::cluster::shared();
    let prefix = support::namespace("cluster-service");
    let env = Env::from_pairs([
        ("REDIS_CLUSTER_NODES", shared.nodes_variable()),
        // Set too: the cluster list wins.
        ("REDIS_URL", support::redis_url()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
        ("INFRA_RATE_LIMIT_ALGORITHM", "token_bucket".into()),
    ]);
    let service = CacheService::from_env(&env).unwrap();
    assert_eq!(service.backend(), "redis-cluster");
    let report = service.health().check().await;
    assert_eq!(
        (
            report.service.as_str(),
            report.backend.as_str(),
            report.status
        ),
        ("cache", "redis-cluster", HealthStatus::Healthy),
        "{}",
        report.detail
    );
    let decision = service
        .rate_limiter()
        .check("ip", 2, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(decision.allowed && !decision.fallback);
    let stored: Vec<String> = support::cluster::keys_per_master(shared, &prefix)
        .await
        .into_iter()
        .flat_map(|(_, keys)| keys)
        .collect();
    assert_eq!(
        stored,
        vec![format!("{prefix}rl:token_bucket:2:10000:{{ip}}")],
        "the decision was stored under the prefix, its key in a hash tag"
    );
    assert_eq!(support::cluster::cleanup_prefix(shared, &prefix).await, 1);
}

#[tokio::test]
async fn memory_probe_writes_reads_and_deletes() {
    let cache = MemoryCache::new(MemoryConfig::default());
    let report = HealthCheck::check(&cache).await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert_eq!(cache.usage().await.0, 0, "the probe deletes its key");

    // A store that cannot take the probe's write is reported, not assumed healthy.
    let refusing = MemoryCache::new(MemoryConfig::default()).with_limits(CacheLimits {
        max_key_bytes: 8,
        ..CacheLimits::default()
    });
    let report = HealthCheck::check(&refusing).await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(
        report.detail.contains("health probe write failed") && report.detail.contains("key"),
        "{}",
        report.detail
    );
}
