//! Issue 21's rows: each hot path with the Prometheus recorder installed against the same
//! run without one (goal: ratio ≥ 0.97). Runs last — it installs the process-wide recorder —
//! and builds its "without" caches before installing it: their metric handles stay no-ops,
//! while the caches built after it record every hit, miss, latency and decision.

use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use infra_cache::{MemoryCache, MemoryConfig, RateLimitAlgorithm, RedisCache};
use infra_core::testkit::bench_report::Goal;
use infra_core::{Cache, CacheExt, RateLimiter};

use super::{ROUNDS, cleanup, commit, concurrent, config, payload, runtime, sampled, summary};

pub(crate) fn metrics_overhead(c: &mut Criterion) {
    let rt = runtime();
    let prefix = format!("bench:metrics:{}:", std::process::id());
    let plain_redis =
        Arc::new(RedisCache::new(config(&prefix), RateLimitAlgorithm::SlidingWindow).unwrap());
    let plain_memory = MemoryCache::new(MemoryConfig::default());
    infra_core::metrics_exporter::install_prometheus_recorder().unwrap();
    let recorded_redis =
        Arc::new(RedisCache::new(config(&prefix), RateLimitAlgorithm::SlidingWindow).unwrap());
    let recorded_memory = MemoryCache::new(MemoryConfig::default());
    let value = Arc::new(payload());
    let bytes = serde_json::to_vec(&payload()).unwrap();
    let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
    rt.block_on(async {
        for key in &keys {
            for memory in [&plain_memory, &recorded_memory] {
                memory
                    .set(key, &bytes, Duration::from_secs(600))
                    .await
                    .unwrap();
            }
        }
    });

    let get_set = |cache: Arc<RedisCache>| {
        let (rt, value) = (&rt, value.clone());
        move |b: &mut criterion::Bencher| {
            b.to_async(rt).iter_custom(|iters| {
                let (cache, value) = (cache.clone(), value.clone());
                async move {
                    concurrent(iters, move |i| {
                        let (cache, value) = (cache.clone(), value.clone());
                        async move {
                            let key = format!("k{}", i % 1000);
                            if i.is_multiple_of(2) {
                                cache
                                    .set_json(&key, &*value, Duration::from_secs(60))
                                    .await
                                    .unwrap();
                            } else {
                                let _: Option<serde_json::Value> =
                                    cache.get_json(&key).await.unwrap();
                            }
                        }
                    })
                    .await
                }
            })
        }
    };
    let decisions = |cache: Arc<RedisCache>| {
        let rt = &rt;
        move |b: &mut criterion::Bencher| {
            b.to_async(rt).iter_custom(|iters| {
                let cache = cache.clone();
                async move {
                    concurrent(iters, move |i| {
                        let cache = cache.clone();
                        async move {
                            let key = format!("user{}", i % 100);
                            cache
                                .check(&key, 1_000_000_000, Duration::from_secs(60))
                                .await
                                .unwrap();
                        }
                    })
                    .await
                }
            })
        }
    };
    let mut group = c.benchmark_group("with the Prometheus recorder");
    let (mut plain, mut recorded) = (
        get_set(plain_redis.clone()),
        get_set(recorded_redis.clone()),
    );
    for round in 1..=ROUNDS {
        group.bench_function(format!("redis get/set, no recorder #{round}"), &mut plain);
        commit("metrics redis plain");
        group.bench_function(format!("redis get/set, recorder #{round}"), &mut recorded);
        commit("metrics redis recorded");
    }
    let (mut plain, mut recorded) = (
        decisions(plain_redis.clone()),
        decisions(recorded_redis.clone()),
    );
    for round in 1..=ROUNDS {
        group.bench_function(format!("rate limit, no recorder #{round}"), &mut plain);
        commit("metrics limit plain");
        group.bench_function(format!("rate limit, recorder #{round}"), &mut recorded);
        commit("metrics limit recorded");
    }
    let (mut plain, mut recorded) = (
        memory_get(&rt, &plain_memory, &keys),
        memory_get(&rt, &recorded_memory, &keys),
    );
    for round in 1..=ROUNDS {
        group.bench_function(format!("memory get, no recorder #{round}"), &mut plain);
        commit("metrics memory plain");
        group.bench_function(format!("memory get, recorder #{round}"), &mut recorded);
        commit("metrics memory recorded");
    }
    group.finish();
    for (name, plain, recorded) in [
        (
            "redis get/set 1 KiB JSON, 64 tasks, with the Prometheus recorder",
            ("RedisCache, no recorder", "metrics redis plain"),
            ("RedisCache, Prometheus recorder", "metrics redis recorded"),
        ),
        (
            "rate-limit decisions (sliding window), 64 tasks, with the Prometheus recorder",
            ("RedisCache::check, no recorder", "metrics limit plain"),
            (
                "RedisCache::check, Prometheus recorder",
                "metrics limit recorded",
            ),
        ),
        (
            "memory get 1 KiB, one task, with the Prometheus recorder",
            ("MemoryCache::get, no recorder", "metrics memory plain"),
            (
                "MemoryCache::get, Prometheus recorder",
                "metrics memory recorded",
            ),
        ),
    ] {
        if let Some(row) = summary(name, &[plain], recorded, &[]) {
            row.goal(Goal::ratio_at_least(0.97))
                .emit()
                .expect("bench report written");
        }
    }
    rt.block_on(cleanup(&prefix));
}

/// `MemoryCache::get` of the 1,000 keys in turn, one task.
fn memory_get<'a>(
    rt: &'a tokio::runtime::Runtime,
    cache: &'a MemoryCache,
    keys: &'a [String],
) -> impl FnMut(&mut criterion::Bencher) + 'a {
    move |b: &mut criterion::Bencher| {
        b.to_async(rt).iter_custom(|iters| {
            sampled(iters, move |i| async move {
                std::hint::black_box(cache.get(&keys[i % 1000]).await.unwrap());
            })
        })
    }
}
