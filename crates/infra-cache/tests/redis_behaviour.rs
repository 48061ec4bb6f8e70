//! RedisCache beyond the suites: Redis's own PTTL, limits, single flight, early refresh,
//! one-round-trip rate limiting with NOSCRIPT recovery, and an outage of a Redis the test
//! starts and kills itself.

mod support;

use support::own_redis::{OwnRedis, spare_port};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use infra_cache::{
    EarlyRefresh, FailurePolicy, RateLimitAlgorithm, RedisCache, RedisConfig, SingleFlight,
};
use infra_core::{Cache, CacheExt, CacheLimits, ErrorKind, HealthStatus, RateLimiter};

#[tokio::test]
async fn ttl_is_redis_own_pttl_and_keys_live_under_the_namespace() {
    let cache = support::redis_cache("pttl", RateLimitAlgorithm::default());
    cache
        .set("k", b"v", Duration::from_millis(1500))
        .await
        .unwrap();
    let full_key = format!("{}k", cache.config().key_prefix);
    let mut raw = support::raw().await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&full_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(pttl > 1000 && pttl <= 1500, "PTTL {pttl}");
    let ours = cache.ttl("k").await.unwrap().unwrap();
    assert!(ours <= Duration::from_millis(1500) && ours > Duration::from_millis(1000));
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&full_key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0, "Redis itself expired the key");
    assert_eq!(support::cleanup(&cache).await, 0);
}

#[tokio::test]
async fn oversized_values_and_keys_are_refused_without_writing() {
    let limits = CacheLimits {
        max_value_bytes: 16,
        max_key_bytes: 200,
        ..CacheLimits::default()
    };
    let cache = support::redis_cache("limits", RateLimitAlgorithm::default()).with_limits(limits);
    let err = cache
        .set("big", &[0u8; 17], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::InvalidInput, Some("value"))
    );
    assert!(err.to_string().contains("limit is 16"), "{err}");
    let err = cache
        .set(&"k".repeat(190), b"v", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        err.field(),
        Some("key"),
        "the namespace prefix counts against the key limit"
    );
    let err = cache
        .set_many(
            vec![("a".into(), b"ok".to_vec()), ("b".into(), vec![0; 17])],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("value"));
    assert!(
        !cache.exists("a").await.unwrap(),
        "a refused batch writes nothing"
    );
    assert_eq!(support::cleanup(&cache).await, 0);
}

#[tokio::test]
async fn decode_error_names_the_key_and_leaves_others_alone() {
    let cache = support::redis_cache("decode", RateLimitAlgorithm::default());
    cache
        .set("prefs", b"{not json", Duration::from_secs(5))
        .await
        .unwrap();
    cache
        .set_json("other", &1u8, Duration::from_secs(5))
        .await
        .unwrap();
    let err = cache
        .get_json::<serde_json::Value>("prefs")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert_eq!(err.context("key"), Some("prefs"));
    assert_eq!(cache.get_json::<u8>("other").await.unwrap(), Some(1));
    assert_eq!(
        cache.get("prefs").await.unwrap().as_deref(),
        Some(&b"{not json"[..])
    );
    support::cleanup(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_the_loader_once() {
    let cache = Arc::new(support::redis_cache(
        "single-flight",
        RateLimitAlgorithm::default(),
    ));
    let flight = Arc::new(SingleFlight::new(cache.clone()));
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let flight = flight.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                flight
                    .get_or_set_with("user:1", Duration::from_secs(30), || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(vec!["Mon".to_string(), "Tue".to_string()])
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), ["Mon", "Tue"]);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader run for 50 concurrent misses"
    );
    support::cleanup(&cache).await;
}

#[tokio::test]
async fn early_refresh_recomputes_a_hot_key_before_it_expires() {
    let cache = Arc::new(support::redis_cache(
        "xfetch",
        RateLimitAlgorithm::default(),
    ));
    // A huge beta makes the refresh all but certain once the loader's cost is known.
    let flight = SingleFlight::new(cache.clone()).with_early_refresh(EarlyRefresh { beta: 1e6 });
    let calls = AtomicUsize::new(0);
    let load = || async {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(n)
    };
    assert_eq!(
        flight
            .get_or_set_with("hot", Duration::from_secs(30), load)
            .await
            .unwrap(),
        1
    );
    let second = flight
        .get_or_set_with("hot", Duration::from_secs(30), load)
        .await
        .unwrap();
    assert_eq!(second, 2, "refreshed although the entry had 30s left");
    assert!(cache.ttl("hot").await.unwrap().unwrap() > Duration::from_secs(29));

    let plain = SingleFlight::new(cache.clone());
    assert_eq!(
        plain
            .get_or_set_with("hot", Duration::from_secs(30), load)
            .await
            .unwrap(),
        2,
        "without early refresh a hit is a hit"
    );
    support::cleanup(&cache).await;
}

#[tokio::test]
async fn rate_limit_survives_script_flush() {
    let cache = support::redis_cache("noscript", RateLimitAlgorithm::SlidingWindow);
    assert!(
        cache
            .check("k", 3, Duration::from_secs(60))
            .await
            .unwrap()
            .allowed
    );
    let mut raw = support::raw().await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    let d = cache.check("k", 3, Duration::from_secs(60)).await.unwrap();
    assert!(
        d.allowed && !d.fallback,
        "reloaded transparently after NOSCRIPT"
    );
    assert_eq!(d.remaining, 1);
    support::cleanup(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_then_the_same_cache_recovers() {
    let mut server = OwnRedis::start(spare_port());
    let timeout = Duration::from_millis(500);
    let config = RedisConfig::new(format!("redis://127.0.0.1:{}", server.port))
        .with_command_timeout(timeout)
        .with_failure_policy(FailurePolicy::Closed);
    let cache = Arc::new(RedisCache::new(config, RateLimitAlgorithm::FixedWindow).unwrap());

    // Load before the outage.
    let writers: Vec<_> = (0..20)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .set(&format!("k{i}"), b"v", Duration::from_secs(60))
                    .await
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap().unwrap();
    }

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = cache.get("k1").await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert!(
            started.elapsed() < timeout + Duration::from_secs(1),
            "bounded by the command timeout"
        );
    }
    let decision = cache.check("ip", 5, Duration::from_secs(60)).await.unwrap();
    assert!(
        decision.fallback && !decision.allowed,
        "fail-closed policy while down"
    );

    let _restarted = OwnRedis::start(server.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.set("after", b"back", Duration::from_secs(60)).await {
            Ok(()) => break,
            Err(err) => {
                assert!(Instant::now() < deadline, "did not recover: {err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(
        cache.get("after").await.unwrap().as_deref(),
        Some(&b"back"[..])
    );
    let decision = cache.check("ip", 5, Duration::from_secs(60)).await.unwrap();
    assert!(decision.allowed && !decision.fallback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_redis_times_out_instead_of_hanging() {
    let server = OwnRedis::start(spare_port());
    let config = RedisConfig::new(format!("redis://127.0.0.1:{}", server.port))
        .with_command_timeout(Duration::from_millis(300));
    let cache = RedisCache::new(config, RateLimitAlgorithm::TokenBucket).unwrap();
    cache.set("k", b"v", Duration::from_secs(60)).await.unwrap();

    // The process stops answering but keeps its sockets open: only our deadline ends the call.
    server.signal("STOP");
    let err = cache.get("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(err.to_string().contains("redis GET"), "{err}");
    let decision = cache.check("ip", 5, Duration::from_secs(60)).await.unwrap();
    assert!(
        decision.fallback && decision.allowed,
        "fail-open is the default policy"
    );

    server.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.get("k").await {
            Ok(value) => {
                assert_eq!(value.as_deref(), Some(&b"v"[..]));
                break;
            }
            Err(err) => {
                assert!(Instant::now() < deadline, "did not recover: {err:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_decision_is_one_evalsha_and_nothing_else() {
    let server = OwnRedis::start(spare_port());
    let url = format!("redis://127.0.0.1:{}", server.port);
    let config = RedisConfig::new(url.clone()).with_pool_size(4);
    let cache = RedisCache::new(config, RateLimitAlgorithm::SlidingWindow).unwrap();
    // Warm up: load the script and open every pooled connection.
    for i in 0..8 {
        cache
            .check(&format!("warm{i}"), 100, Duration::from_secs(60))
            .await
            .unwrap();
    }
    let client = redis::Client::open(url).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut raw)
        .await
        .unwrap();
    for i in 0..20 {
        let d = cache
            .check(&format!("k{}", i % 3), 100, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(d.allowed && !d.fallback);
    }
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw)
        .await
        .unwrap();
    let calls: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let n = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), n))
        })
        // Our own CONFIG/INFO, and the commands the script runs inside Redis (counted too).
        .filter(|(name, _)| {
            !name.starts_with("config")
                && !["info", "time", "get", "incr", "pexpire"].contains(&name.as_str())
        })
        .collect();
    assert_eq!(
        calls,
        vec![("evalsha".to_owned(), 20)],
        "one EVALSHA per decision, no PING or other command"
    );
}

#[tokio::test]
async fn health_probe_round_trip_leaves_nothing_behind() {
    let cache = support::redis_cache("probe", RateLimitAlgorithm::default());
    let report = infra_core::HealthCheck::check(&cache).await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert_eq!(
        support::cleanup(&cache).await,
        0,
        "the probe deletes its key"
    );
}

#[tokio::test]
async fn a_redis_answering_ping_but_refusing_writes_is_unhealthy() {
    // maxmemory of one byte with noeviction: PING and INFO still answer, every write is
    // refused with OOM — what a full production Redis looks like.
    let server = OwnRedis::start_with(
        spare_port(),
        &["--maxmemory", "1", "--maxmemory-policy", "noeviction"],
    );
    let cache = RedisCache::new(
        RedisConfig::new(format!("redis://127.0.0.1:{}", server.port)),
        RateLimitAlgorithm::default(),
    )
    .unwrap();
    let mut conn = cache.pool().get().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
    assert_eq!(pong, "PONG", "a PING-only probe would call this healthy");
    drop(conn);
    let report = infra_core::HealthCheck::check(&cache).await;
    assert_eq!(report.status, HealthStatus::Unhealthy, "{}", report.detail);
    assert!(
        report.detail.contains("health probe write failed") && report.detail.contains("OOM"),
        "{}",
        report.detail
    );
}
