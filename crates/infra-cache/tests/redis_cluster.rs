//! `RedisClusterCache` beyond the suites, on real clusters of the test's own: keys spread
//! over every master and batches split by slot, hash-tagged rate-limit keys, `NOSCRIPT` on
//! every node, reads from replicas, passwords from the URLs, the health check naming masters
//! and replicas, a frozen master timing calls out, and a killed master failed over under the
//! same cache.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infra_cache::{
    FailurePolicy, RateLimitAlgorithm, RedisClusterCache, RedisClusterConfig, TaggedCache,
};
use infra_core::testkit::redis_cluster::LocalRedisCluster;
use infra_core::{Cache, ErrorKind, HealthCheck, HealthStatus, RateLimiter};
use support::cluster;

/// Polls `check` until it holds, failing after a generous deadline (never a timing assertion).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_spreads_over_every_master_and_comes_back_in_order() {
    let shared = cluster::shared();
    let cache = cluster::cache("batches", RateLimitAlgorithm::default());
    let prefix = cache.config().key_prefix.clone();
    let entries: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("user:{i}:prefs"), format!("v{i}").into_bytes()))
        .collect();
    cache
        .set_many(entries.clone(), Duration::from_secs(60))
        .await
        .unwrap();

    let placed = cluster::keys_per_master(shared, &prefix).await;
    assert_eq!(placed.len(), 3, "three masters");
    for (port, keys) in &placed {
        assert!(!keys.is_empty(), "master {port} holds some of the batch");
    }
    assert_eq!(placed.iter().map(|(_, k)| k.len()).sum::<usize>(), 300);

    let mut asked: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
    asked.insert(7, "missing".into());
    let values = cache.get_many(&asked).await.unwrap();
    assert_eq!(values.len(), 301);
    assert_eq!(values[7], None);
    for (i, (key, value)) in asked.iter().zip(&values).enumerate() {
        if i != 7 {
            let n: usize = key.split(':').nth(1).unwrap().parse().unwrap();
            assert_eq!(value.as_deref(), Some(format!("v{n}").as_bytes()), "{key}");
        }
    }

    // Keys sharing a hash tag share a slot: the batch is one script there.
    cache
        .set_many(
            vec![
                ("{team:7}:a".into(), b"a".to_vec()),
                ("{team:7}:b".into(), b"b".to_vec()),
            ],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        shared.key_slot(&format!("{prefix}{{team:7}}:a")).unwrap(),
        shared.key_slot(&format!("{prefix}{{team:7}}:b")).unwrap()
    );

    assert_eq!(cache.delete_prefix("user:").await.unwrap(), 300);
    assert_eq!(cache.delete_prefix("{team:7}").await.unwrap(), 2);
    assert_eq!(
        cluster::cleanup(shared, &cache).await,
        0,
        "every master emptied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiters_keys_carry_its_hash_tag_and_stay_exact() {
    let shared = cluster::shared();
    for algorithm in RateLimitAlgorithm::ALL {
        let cache = cluster::cache(&format!("tags-{}", algorithm.as_str()), algorithm);
        let prefix = cache.config().key_prefix.clone();
        // Keys with the characters a hash tag is made of still decide in one slot.
        for key in ["user:1", "}x{", "a{b}c", "100%"] {
            let window = Duration::from_secs(86_400);
            let decisions: Vec<bool> = futures::future::join_all(
                (0..5).map(|_| RateLimiter::check(&cache, key, 3, window)),
            )
            .await
            .into_iter()
            .map(|d| {
                let d = d.unwrap();
                assert!(!d.fallback, "{algorithm:?} {key}: {d:?}");
                d.allowed
            })
            .collect();
            assert_eq!(
                decisions.iter().filter(|a| **a).count(),
                3,
                "{algorithm:?} {key}: {decisions:?}"
            );
        }
        let stored: Vec<String> = cluster::keys_per_master(shared, &prefix)
            .await
            .into_iter()
            .flat_map(|(_, keys)| keys)
            .collect();
        assert!(!stored.is_empty());
        for key in &stored {
            assert!(
                key.starts_with(&format!("{prefix}rl:{}:3:86400000:{{", algorithm.as_str())),
                "{key}"
            );
        }
        let tagged = format!("{prefix}rl:{}:3:86400000:{{user:1}}", algorithm.as_str());
        assert!(
            stored.iter().any(|k| k.starts_with(&tagged)),
            "the plain key is the hash tag: {stored:?}"
        );
        cluster::cleanup(shared, &cache).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_survives_script_flush_on_every_node() {
    let shared = cluster::shared();
    let cache = cluster::cache("noscript", RateLimitAlgorithm::SlidingWindow);
    let window = Duration::from_secs(86_400);
    assert!(
        RateLimiter::check(&cache, "k", 3, window)
            .await
            .unwrap()
            .allowed
    );
    for port in shared.ports() {
        shared.cli(port, &["SCRIPT", "FLUSH"]).unwrap();
    }
    let d = RateLimiter::check(&cache, "k", 3, window).await.unwrap();
    assert!(d.allowed && !d.fallback, "sent again as EVAL: {d:?}");
    assert_eq!(d.remaining, 1);
    cache
        .set_many(vec![("a".into(), b"1".to_vec())], Duration::from_secs(60))
        .await
        .unwrap();
    cluster::cleanup(shared, &cache).await;
}

/// Keys written while their tag is invalidated again and again: once the writers stop, one
/// more invalidation must leave none of them (a write that lands between the rename of the
/// tag set and the deletion of its members is in the fresh set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_misses_no_key_written_concurrently() {
    let shared = cluster::shared();
    let cache = Arc::new(cluster::cache("tag-race", RateLimitAlgorithm::default()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for i in 0..60 {
                    cache
                        .set_tagged(
                            &format!("w{w}:{i}"),
                            b"v",
                            Duration::from_secs(60),
                            &["hot", "other"],
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let invalidator = {
        let cache = cache.clone();
        tokio::spawn(async move {
            for _ in 0..30 {
                cache.invalidate_tag("hot").await.unwrap();
            }
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    invalidator.await.unwrap();
    cache.invalidate_tag("hot").await.unwrap();
    for w in 0..4 {
        for i in 0..60 {
            assert!(
                !cache.exists(&format!("w{w}:{i}")).await.unwrap(),
                "w{w}:{i} outlived its tag"
            );
        }
    }
    cache.invalidate_tag("other").await.unwrap();
    assert_eq!(cluster::cleanup(shared, &cache).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_replicas_reach_a_replica() {
    let shared = cluster::shared();
    let config = cluster::config(shared, "replica-reads").with_read_from_replicas(true);
    let cache = RedisClusterCache::new(config, RateLimitAlgorithm::default()).unwrap();
    let topology = shared.topology(shared.masters().unwrap()[0]).unwrap();
    let replicas: Vec<u16> = topology
        .iter()
        .filter(|n| !n.master)
        .map(|n| n.port)
        .collect();
    assert_eq!(replicas.len(), 3);
    let gets_on_replicas = || {
        replicas
            .iter()
            .map(|&port| {
                let stats = shared.cli(port, &["INFO", "commandstats"]).unwrap();
                stats
                    .lines()
                    .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
                    .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum::<u64>()
    };
    let before = gets_on_replicas();
    for i in 0..30 {
        let key = format!("r{i}");
        cache
            .set(&key, b"v", Duration::from_secs(60))
            .await
            .unwrap();
        // Replication is asynchronous: a replica may answer before it has the write.
        eventually("the replica has the write", || async {
            cache.get(&key).await.unwrap().as_deref() == Some(&b"v"[..])
        })
        .await;
    }
    assert!(
        gets_on_replicas() > before,
        "some GET was answered by a replica"
    );
    // The probe reads back from the master, so it never races replication.
    let report = HealthCheck::check(&cache).await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    cluster::cleanup(shared, &cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_every_master_and_replica() {
    let cache = cluster::cache("health", RateLimitAlgorithm::default());
    let report = HealthCheck::check(&cache).await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert_eq!(report.backend, "redis-cluster");
    assert_eq!(
        report.detail.matches("master 127.0.0.1:").count(),
        3,
        "{}",
        report.detail
    );
    assert_eq!(
        report.detail.matches("replica 127.0.0.1:").count(),
        3,
        "{}",
        report.detail
    );
    assert!(
        report.detail.contains("16384/16384 slots served"),
        "{}",
        report.detail
    );
    assert_eq!(cluster::cleanup(cluster::shared(), &cache).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_in_the_urls_reaches_every_node_and_a_wrong_one_names_the_variable() {
    let secured = LocalRedisCluster::builder()
        .password("cluster-test-secret")
        .start()
        .expect("a password-protected local cluster");
    let cache = RedisClusterCache::new(
        cluster::config(&secured, "password"),
        RateLimitAlgorithm::default(),
    )
    .unwrap();
    for i in 0..20 {
        cache
            .set(&format!("k{i}"), b"v", Duration::from_secs(60))
            .await
            .unwrap();
    }
    assert_eq!(
        HealthCheck::check(&cache).await.status,
        HealthStatus::Healthy
    );

    let wrong: Vec<String> = secured
        .urls()
        .iter()
        .map(|u| u.replace("cluster-test-secret", "wrong"))
        .collect();
    let config = RedisClusterConfig::new(wrong)
        .unwrap()
        .with_command_timeout(Duration::from_secs(5));
    let refused = RedisClusterCache::new(config, RateLimitAlgorithm::default()).unwrap();
    let err = refused.get("k1").await.unwrap_err();
    let printed = format!("{err} {err:?}");
    assert!(!printed.contains("wrong@"), "{printed}");
    assert_eq!(err.variable(), Some("REDIS_CLUSTER_NODES"), "{printed}");
}

#[test]
fn a_prefix_with_a_hash_tag_is_refused() {
    let config = RedisClusterConfig::new(["redis://127.0.0.1:7000"])
        .unwrap()
        .with_key_prefix("app:{tenant}:");
    let err = match RedisClusterCache::new(config, RateLimitAlgorithm::default()) {
        Ok(_) => panic!("a prefix with braces is refused"),
        Err(err) => err,
    };
    assert_eq!(err.variable(), Some("REDIS_KEY_PREFIX"), "{err}");
}

/// A key of this namespace served by the master on `port`.
fn key_on(shared: &LocalRedisCluster, prefix: &str, port: u16) -> String {
    (0..)
        .map(|i| format!("probe-{i}"))
        .find(|k| {
            let slot = shared.key_slot(&format!("{prefix}{k}")).unwrap();
            shared.master_of(slot).unwrap() == port
        })
        .unwrap()
}

/// A rate limiter's key whose counters live on the master on `port` (its slot is its hash
/// tag's).
fn limiter_key_on(shared: &LocalRedisCluster, port: u16) -> String {
    (0..)
        .map(|i| format!("ip-{i}"))
        .find(|k| {
            let slot = shared.key_slot(&format!("{{{k}}}")).unwrap();
            shared.master_of(slot).unwrap() == port
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_master_times_out_and_a_killed_one_fails_over_under_the_same_cache() {
    let mut own = LocalRedisCluster::builder()
        .node_timeout(Duration::from_secs(2))
        .start()
        .expect("a local cluster of the test's own");
    let timeout = Duration::from_millis(500);
    let config = cluster::config(&own, "failover")
        .with_command_timeout(timeout)
        .with_failure_policy(FailurePolicy::Closed);
    let prefix = config.key_prefix.clone();
    let cache = RedisClusterCache::new(config, RateLimitAlgorithm::FixedWindow).unwrap();
    let masters = own.masters().unwrap();
    let victim = masters[1];
    let key = key_on(&own, &prefix, victim);
    let elsewhere = key_on(&own, &prefix, masters[0]);
    let limited = limiter_key_on(&own, victim);
    cache
        .set(&key, b"before", Duration::from_secs(600))
        .await
        .unwrap();

    // Frozen, sockets open: only our deadline ends the call; other masters answer.
    own.signal(victim, "STOP").unwrap();
    let err = cache.get(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    cache
        .set(&elsewhere, b"v", Duration::from_secs(600))
        .await
        .unwrap();
    own.signal(victim, "CONT").unwrap();
    eventually("the thawed master answers", || async {
        cache.get(&key).await.is_ok()
    })
    .await;

    // Killed: its slots are lost until its replica is promoted.
    own.kill(victim).unwrap();
    eventually("the health check reports the missing slots", || async {
        let report = HealthCheck::check(&cache).await;
        report.status == HealthStatus::Unhealthy && report.detail.contains("not served")
    })
    .await;
    let err = cache.get(&key).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let decision = RateLimiter::check(&cache, &limited, 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        decision.fallback && !decision.allowed,
        "fail-closed while down: {decision:?}"
    );

    eventually(
        "the replica is promoted and the same cache writes there",
        || async {
            cache
                .set(&key, b"after", Duration::from_secs(600))
                .await
                .is_ok()
        },
    )
    .await;
    assert_eq!(
        cache.get(&key).await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
    let decision = RateLimiter::check(&cache, &limited, 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(decision.allowed && !decision.fallback, "{decision:?}");
    eventually(
        "health reports the failed node and the lone master",
        || async {
            let report = HealthCheck::check(&cache).await;
            report.status == HealthStatus::Degraded
                && report.detail.contains(&format!("127.0.0.1:{victim}"))
                && report.detail.contains("has no live replica")
        },
    )
    .await;
    let masters_now: HashSet<u16> = own.masters().unwrap().into_iter().collect();
    assert_eq!(masters_now.len(), 3);
    assert!(!masters_now.contains(&victim));
}
