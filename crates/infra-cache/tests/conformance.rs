//! Every backend passes infra-core's conformance suites, with every rate-limit algorithm: the
//! Redis one against the real Redis, the Redis Cluster one against a six-node cluster of the
//! test binary's own (three masters, three replicas), each run in its own namespace.

mod support;

use std::sync::Arc;

use infra_cache::{MemoryCache, MemoryConfig, RateLimitAlgorithm};
use infra_core::testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passes_the_cache_suite() {
    let cache = Arc::new(support::redis_cache(
        "cache-suite",
        RateLimitAlgorithm::default(),
    ));
    testkit::cache::run_all(cache.clone()).await;
    assert_eq!(
        support::cleanup(&cache).await,
        0,
        "the suite leaves nothing behind"
    );
}

#[cfg(feature = "redis-cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_passes_the_cache_suite() {
    let cache = Arc::new(support::cluster::cache(
        "cluster-cache-suite",
        RateLimitAlgorithm::default(),
    ));
    testkit::cache::run_all(cache.clone()).await;
    assert_eq!(
        support::cluster::cleanup(support::cluster::shared(), &cache).await,
        0,
        "the suite leaves nothing behind, on any master"
    );
}

#[cfg(feature = "redis-cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_passes_the_rate_limit_suite_with_every_algorithm() {
    for algorithm in RateLimitAlgorithm::ALL {
        let cache = Arc::new(support::cluster::cache(
            &format!("cluster-rl-{}", algorithm.as_str()),
            algorithm,
        ));
        testkit::rate_limit::run_all(cache.clone()).await;
        support::cluster::cleanup(support::cluster::shared(), &cache).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_cache_suite() {
    testkit::cache::run_all(Arc::new(MemoryCache::new(MemoryConfig::default()))).await;
}

/// `CacheService` is a `Cache` itself, forwarding to the backend the environment picked: the
/// suite passes through it as through the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_service_passes_the_cache_suite() {
    let service = infra_cache::CacheService::from_env(&infra_core::Env::empty()).unwrap();
    assert_eq!(service.backend(), "memory");
    testkit::cache::run_all(Arc::new(service)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passes_the_rate_limit_suite_with_every_algorithm() {
    for algorithm in RateLimitAlgorithm::ALL {
        let cache = Arc::new(support::redis_cache(
            &format!("rl-{}", algorithm.as_str()),
            algorithm,
        ));
        testkit::rate_limit::run_all(cache.clone()).await;
        support::cleanup(&cache).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_rate_limit_suite_with_every_algorithm() {
    for algorithm in RateLimitAlgorithm::ALL {
        let cache = MemoryCache::with_algorithm(MemoryConfig::default(), algorithm);
        testkit::rate_limit::run_all(Arc::new(cache)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_single_flight_runs_the_loader_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    let flight = Arc::new(infra_cache::SingleFlight::new(Arc::new(MemoryCache::new(
        MemoryConfig::default(),
    ))));
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (flight, calls) = (flight.clone(), calls.clone());
            tokio::spawn(async move {
                flight
                    .get_or_set_with("k", Duration::from_secs(5), || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(7u32)
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 7);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
