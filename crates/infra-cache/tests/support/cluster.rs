//! The test binary's own Redis Cluster (three masters, three replicas, started once on free
//! ports and stopped when the binary exits), and raw per-node access for checks that must not
//! go through the code under test.

use std::sync::OnceLock;
use std::time::Duration;

use infra_cache::{RateLimitAlgorithm, RedisClusterCache, RedisClusterConfig};
use infra_core::testkit::redis_cluster::LocalRedisCluster;

/// The cluster every test of this binary shares; each test works in its own namespace.
/// Failing to start it fails the test (never a skip).
pub fn shared() -> &'static LocalRedisCluster {
    static CLUSTER: OnceLock<LocalRedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        LocalRedisCluster::builder()
            .start()
            .unwrap_or_else(|e| panic!("cannot start the test's Redis Cluster: {e}"))
    })
}

/// A config for `cluster`'s nodes in a fresh namespace.
pub fn config(cluster: &LocalRedisCluster, test: &str) -> RedisClusterConfig {
    RedisClusterConfig::new(cluster.urls())
        .unwrap()
        .with_key_prefix(super::namespace(test))
        .with_command_timeout(Duration::from_secs(2))
}

/// A cache on the shared cluster in a fresh namespace.
pub fn cache(test: &str, algorithm: RateLimitAlgorithm) -> RedisClusterCache {
    RedisClusterCache::new(config(shared(), test), algorithm).unwrap()
}

/// A plain connection to one node (no cluster routing).
pub async fn node(cluster: &LocalRedisCluster, port: u16) -> redis::aio::MultiplexedConnection {
    let url = cluster
        .urls()
        .into_iter()
        .find(|u| u.ends_with(&format!(":{port}")))
        .expect("a node of the cluster");
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Keys under `prefix` on each master, by port (`SCAN` on each node directly).
pub async fn keys_per_master(cluster: &LocalRedisCluster, prefix: &str) -> Vec<(u16, Vec<String>)> {
    let mut out = Vec::new();
    for port in cluster.masters().unwrap() {
        let mut conn = node(cluster, port).await;
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.push((port, keys));
    }
    out
}

/// Deletes every key of the cache's namespace on every master; returns how many there were.
pub async fn cleanup(cluster: &LocalRedisCluster, cache: &RedisClusterCache) -> u64 {
    cleanup_prefix(cluster, &cache.config().key_prefix).await
}

/// Deletes every key under `prefix` on every master (one `DEL` per key: they live in
/// different slots); returns how many there were.
pub async fn cleanup_prefix(cluster: &LocalRedisCluster, prefix: &str) -> u64 {
    let mut removed = 0;
    for (port, keys) in keys_per_master(cluster, prefix).await {
        let mut conn = node(cluster, port).await;
        for key in keys {
            let n: u64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            removed += n;
        }
    }
    removed
}
