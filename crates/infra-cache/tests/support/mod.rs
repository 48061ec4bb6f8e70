//! Shared helpers: a unique namespace per test on the real Redis, removed afterwards.
#![allow(dead_code)] // each test binary uses a different subset

#[cfg(feature = "redis-cluster")]
pub mod cluster;
pub mod own_redis;
pub mod upstash_stand_in;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infra_cache::{RateLimitAlgorithm, RedisCache, RedisConfig};

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn namespace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("infra-test:{test}:{}:{nanos:x}:", std::process::id())
}

pub fn redis_cache(test: &str, algorithm: RateLimitAlgorithm) -> RedisCache {
    let config = RedisConfig::new(redis_url())
        .with_key_prefix(namespace(test))
        .with_command_timeout(Duration::from_secs(2));
    RedisCache::new(config, algorithm).unwrap()
}

/// A cache over an existing namespace (for cleaning up after code that built its own).
pub fn redis_cache_with_prefix(prefix: &str) -> RedisCache {
    RedisCache::new(
        RedisConfig::new(redis_url()).with_key_prefix(prefix),
        RateLimitAlgorithm::default(),
    )
    .unwrap()
}

/// Raw Redis access for checks that must not go through the code under test.
pub async fn raw() -> deadpool_redis::Connection {
    let pool = deadpool_redis::Config::from_url(redis_url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    pool.get().await.unwrap()
}

/// Deletes every key of the cache's namespace; returns how many there were.
pub async fn cleanup(cache: &RedisCache) -> u64 {
    let pattern = format!("{}*", cache.config().key_prefix);
    let mut conn = raw().await;
    let mut cursor = 0u64;
    let mut removed = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
            removed += n;
        }
        if next == 0 {
            return removed;
        }
        cursor = next;
    }
}
