//! The same Redis workloads on a three-master Redis Cluster (three replicas too, started by the
//! benchmark on free ports and stopped with it): `RedisClusterCache` against redis-rs's async
//! cluster client, in its strongest use of this run.
//!
//! The raw sides share cluster connections as `RedisClusterCache` does — one for every task,
//! or one per CPU, round robin — and send each command either through `ConnectionLike`
//! (`query_async`: the client finds the key's slot by parsing the command, and clones it) or
//! through `route_command` with the slot computed from the key (what ours does); the fastest
//! of them leads.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use criterion::Criterion;
use infra_cache::{RateLimitAlgorithm, RedisClusterCache, RedisClusterConfig, redis_scripts};
use infra_core::testkit::bench_report::Goal;
use infra_core::testkit::redis_cluster::LocalRedisCluster;
use infra_core::{Cache, CacheExt, RateLimiter};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use super::{
    COMMAND_TIMEOUT, POOL_SIZE, ROUNDS, commit, concurrent, cpus, payload, raw_evalsha,
    raw_get_set, runtime, summary,
};

/// The benchmark's own cluster, started on first use.
fn cluster() -> &'static LocalRedisCluster {
    static CLUSTER: OnceLock<LocalRedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        LocalRedisCluster::builder()
            .start()
            .unwrap_or_else(|e| panic!("cannot start the benchmark's Redis Cluster: {e}"))
    })
}

fn ours(prefix: &str, algorithm: RateLimitAlgorithm) -> Arc<RedisClusterCache> {
    let config = RedisClusterConfig::new(cluster().urls())
        .unwrap()
        .with_key_prefix(prefix)
        .with_pool_size(POOL_SIZE)
        .with_command_timeout(COMMAND_TIMEOUT);
    Arc::new(RedisClusterCache::new(config, algorithm).unwrap())
}

/// `n` raw cluster connections; command `i` goes on connection `i % n`.
async fn raw(n: usize) -> Arc<Vec<ClusterConnection>> {
    let client = ClusterClient::new(cluster().urls()).unwrap();
    let mut conns = Vec::new();
    for _ in 0..n {
        conns.push(client.get_async_connection().await.unwrap());
    }
    Arc::new(conns)
}

/// How a raw side sends a command.
#[derive(Clone, Copy)]
enum Dispatch {
    /// `ConnectionLike::req_packed_command` (`query_async`): the client parses the command
    /// for its key's slot and clones it.
    Query,
    /// `route_command` with the route of the key computed by the caller.
    Routed,
}

fn route(key: &str) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key.as_bytes(),
        SlotAddr::Master,
    )))
}

pub(super) fn cluster_get_set(c: &mut Criterion) {
    let rt = runtime();
    let prefix = format!("bench-cluster:{}:", std::process::id());
    let cache = ours(&prefix, RateLimitAlgorithm::default());
    let value = Arc::new(payload());

    let mut group = c.benchmark_group("redis cluster get/set 1 KiB JSON, 64 tasks");
    let mut ours_side = |b: &mut criterion::Bencher| {
        b.to_async(&rt).iter_custom(|iters| {
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
                            let _: Option<serde_json::Value> = cache.get_json(&key).await.unwrap();
                        }
                    }
                })
                .await
            }
        })
    };
    let raw_side = |conns: Arc<Vec<ClusterConnection>>, send: Dispatch| {
        let (rt, value, prefix) = (&rt, value.clone(), prefix.clone());
        move |b: &mut criterion::Bencher| {
            b.to_async(rt).iter_custom(|iters| {
                let (conns, value, prefix) = (conns.clone(), value.clone(), prefix.clone());
                async move {
                    concurrent(iters, move |i| {
                        let (conns, value, prefix) = (conns.clone(), value.clone(), prefix.clone());
                        async move {
                            let key = format!("{prefix}k{}", i % 1000);
                            let mut conn = conns[i as usize % conns.len()].clone();
                            match send {
                                Dispatch::Query => raw_get_set(&mut conn, i, &key, &value).await,
                                Dispatch::Routed => {
                                    routed_get_set(&mut conn, i, &key, &value).await
                                }
                            }
                        }
                    })
                    .await
                }
            })
        }
    };
    let (one, per_cpu) = rt.block_on(async { (raw(1).await, raw(cpus()).await) });
    let mut one_side = raw_side(one.clone(), Dispatch::Query);
    let mut per_cpu_side = raw_side(per_cpu.clone(), Dispatch::Query);
    let mut routed_side = raw_side(per_cpu, Dispatch::Routed);
    let mut routed_one_side = raw_side(one, Dispatch::Routed);
    for round in 1..=ROUNDS {
        group.bench_function(format!("raw, one connection #{round}"), &mut one_side);
        commit("cluster shared 1");
        group.bench_function(format!("RedisClusterCache #{round}"), &mut ours_side);
        commit("cluster ours");
        group.bench_function(
            format!("raw, a connection per CPU #{round}"),
            &mut per_cpu_side,
        );
        commit("cluster shared cpu");
        group.bench_function(
            format!("raw routed, a connection per CPU #{round}"),
            &mut routed_side,
        );
        commit("cluster routed cpu");
        group.bench_function(
            format!("raw routed, one connection #{round}"),
            &mut routed_one_side,
        );
        commit("cluster routed 1");
    }
    group.finish();
    let row = summary(
        "redis cluster (3 masters) get/set 1 KiB JSON, 64 tasks",
        &[
            (
                "raw redis-rs cluster client, one connection shared, query_async",
                "cluster shared 1",
            ),
            (
                "raw redis-rs cluster client, a connection per CPU, query_async",
                "cluster shared cpu",
            ),
            (
                "raw redis-rs cluster client, a connection per CPU, route_command",
                "cluster routed cpu",
            ),
            (
                "raw redis-rs cluster client, one connection shared, route_command",
                "cluster routed 1",
            ),
        ],
        ("RedisClusterCache get_json/set_json", "cluster ours"),
        &[],
    );
    if let Some(row) = row {
        row.goal(Goal::ratio_at_least(0.95))
            .emit()
            .expect("bench report written");
    }
    rt.block_on(cache.delete_prefix("k")).unwrap();
}

/// `raw_get_set` through `route_command`: the same commands, routed by the caller.
async fn routed_get_set(
    conn: &mut ClusterConnection,
    i: u64,
    key: &str,
    value: &serde_json::Value,
) {
    if i.is_multiple_of(2) {
        let bytes = serde_json::to_vec(value).unwrap();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(bytes).arg("PX").arg(60_000);
        let reply = conn.route_command(cmd, route(key)).await.unwrap();
        let () = redis::from_redis_value(reply).unwrap();
    } else {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        let reply = conn.route_command(cmd, route(key)).await.unwrap();
        let got: Option<Vec<u8>> = redis::from_redis_value(reply).unwrap();
        let _: Option<serde_json::Value> = got.map(|b| serde_json::from_slice(&b).unwrap());
    }
}

pub(super) fn cluster_rate_limit(c: &mut Criterion) {
    let rt = runtime();
    let prefix = format!("bench-cluster-rl:{}:", std::process::id());
    let cache = ours(&prefix, RateLimitAlgorithm::SlidingWindow);
    let code = redis_scripts::sliding_window();
    let script = Arc::new(redis::Script::new(&code));
    // Loaded on every master up front: the routed sides send `EVALSHA` only.
    for master in cluster().masters().unwrap() {
        cluster().cli(master, &["SCRIPT", "LOAD", &code]).unwrap();
    }

    let mut group =
        c.benchmark_group("redis cluster rate-limit decisions (sliding window), 64 tasks");
    let mut ours_side = |b: &mut criterion::Bencher| {
        b.to_async(&rt).iter_custom(|iters| {
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
    };
    let raw_side = |conns: Arc<Vec<ClusterConnection>>, send: Dispatch| {
        let (rt, script, prefix) = (&rt, script.clone(), prefix.clone());
        move |b: &mut criterion::Bencher| {
            b.to_async(rt).iter_custom(|iters| {
                let (conns, script, prefix) = (conns.clone(), script.clone(), prefix.clone());
                async move {
                    concurrent(iters, move |i| {
                        let (conns, script, prefix) =
                            (conns.clone(), script.clone(), prefix.clone());
                        async move {
                            // Ours' layout and length (`rawu` for `user`), hash tag included.
                            let tag = format!("rawu{}", i % 100);
                            let key =
                                format!("{prefix}rl:sliding_window:1000000000:60000:{{{tag}}}");
                            let mut conn = conns[i as usize % conns.len()].clone();
                            match send {
                                Dispatch::Query => raw_evalsha(&mut conn, &script, key).await,
                                Dispatch::Routed => {
                                    routed_evalsha(&mut conn, &script, &tag, key).await
                                }
                            }
                        }
                    })
                    .await
                }
            })
        }
    };
    let (one, per_cpu) = rt.block_on(async { (raw(1).await, raw(cpus()).await) });
    let mut one_side = raw_side(one.clone(), Dispatch::Query);
    let mut per_cpu_side = raw_side(per_cpu.clone(), Dispatch::Query);
    let mut routed_side = raw_side(per_cpu, Dispatch::Routed);
    let mut routed_one_side = raw_side(one, Dispatch::Routed);
    for round in 1..=ROUNDS {
        group.bench_function(
            format!("raw EVALSHA, one connection #{round}"),
            &mut one_side,
        );
        commit("cluster rl shared 1");
        group.bench_function(format!("RedisClusterCache::check #{round}"), &mut ours_side);
        commit("cluster rl ours");
        group.bench_function(
            format!("raw EVALSHA, a connection per CPU #{round}"),
            &mut per_cpu_side,
        );
        commit("cluster rl shared cpu");
        group.bench_function(
            format!("raw EVALSHA routed, a connection per CPU #{round}"),
            &mut routed_side,
        );
        commit("cluster rl routed cpu");
        group.bench_function(
            format!("raw EVALSHA routed, one connection #{round}"),
            &mut routed_one_side,
        );
        commit("cluster rl routed 1");
    }
    group.finish();
    let row = summary(
        "redis cluster (3 masters) rate-limit decisions (sliding window), 64 tasks",
        &[
            (
                "raw EVALSHA, redis-rs cluster client, one connection shared",
                "cluster rl shared 1",
            ),
            (
                "raw EVALSHA, redis-rs cluster client, a connection per CPU",
                "cluster rl shared cpu",
            ),
            (
                "raw EVALSHA routed, redis-rs cluster client, a connection per CPU",
                "cluster rl routed cpu",
            ),
            (
                "raw EVALSHA routed, redis-rs cluster client, one connection shared",
                "cluster rl routed 1",
            ),
        ],
        ("RedisClusterCache::check", "cluster rl ours"),
        &[],
    );
    if let Some(row) = row {
        row.goal(Goal::ratio_at_least(0.95))
            .emit()
            .expect("bench report written");
    }
    rt.block_on(cache.delete_prefix("rl")).unwrap();
}

/// `EVALSHA` of the script through `route_command`, routed by the key's hash tag.
async fn routed_evalsha(
    conn: &mut ClusterConnection,
    script: &redis::Script,
    tag: &str,
    key: String,
) {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(1)
        .arg(key)
        .arg(1_000_000_000u64)
        .arg(60_000u64);
    let reply = conn.route_command(cmd, route(tag)).await.unwrap();
    let _: (i64, i64, i64) = redis::from_redis_value(reply).unwrap();
}
