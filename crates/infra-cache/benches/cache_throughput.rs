//! Our cache against raw baselines, measured by criterion in one run; after each pair it
//! prints our rate, the baseline's rate and the ratio (ours / baseline).
//!
//! `cargo bench -p infra-cache` (or `cargo xtask bench cache`). Needs Redis on `REDIS_URL`
//! (default 127.0.0.1:6379) and `redis-benchmark` on PATH for the practical-limit row.
// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use infra_cache::{
    MemoryCache, MemoryConfig, RateLimitAlgorithm, RedisCache, RedisConfig, redis_scripts,
};
use infra_core::{Cache, CacheExt, RateLimiter};
use tokio::runtime::Runtime;

/// Concurrent tasks of the Redis workloads, as `redis-benchmark -c 64`.
const TASKS: u64 = 64;
const POOL_SIZE: usize = 64;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Each side is measured this many times, alternating, so drift in the machine's load (other
/// builds share it) hits both sides alike.
const ROUNDS: usize = 3;

/// Samples: each timed call criterion made of the function being measured right now.
static CALLS: Mutex<Vec<(u64, Duration)>> = Mutex::new(Vec::new());

/// Operations and time each side spent in criterion's measurement samples of this run.
static TALLY: Mutex<Option<HashMap<String, (u64, Duration)>>> = Mutex::new(None);

/// Samples per measurement (warm-up calls come before them).
const SAMPLES: usize = 10;

fn record(ops: u64, elapsed: Duration) {
    CALLS.lock().unwrap().push((ops, elapsed));
}

/// Adds the measurement samples of the function criterion just ran to `side`, leaving out
/// its warm-up calls (which come first).
fn commit(side: &str) {
    let mut calls = CALLS.lock().unwrap();
    let samples = &calls[calls.len().saturating_sub(SAMPLES)..];
    let mut tally = TALLY.lock().unwrap();
    let entry = tally
        .get_or_insert_with(HashMap::new)
        .entry(side.to_owned())
        .or_default();
    for (ops, elapsed) in samples {
        entry.0 += ops;
        entry.1 += *elapsed;
    }
    calls.clear();
}

fn rate(side: &str) -> Option<f64> {
    let tally = TALLY.lock().unwrap();
    let (ops, elapsed) = tally.as_ref()?.get(side).copied()?;
    Some(ops as f64 / elapsed.as_secs_f64())
}

/// Prints both sides and the ratio; nothing when a criterion filter skipped a side.
fn row(name: &str, ours: Option<f64>, baseline_name: &str, baseline: Option<f64>) {
    let (Some(ours), Some(baseline)) = (ours, baseline) else {
        return;
    };
    println!(
        "\n>> {name}: ours {ours:.0}/s, {baseline_name} {baseline:.0}/s, ratio {:.3}\n",
        ours / baseline
    );
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config(prefix: &str) -> RedisConfig {
    RedisConfig::new(redis_url())
        .with_key_prefix(prefix)
        .with_pool_size(POOL_SIZE)
        .with_command_timeout(COMMAND_TIMEOUT)
}

/// A pool built like `RedisCache`'s: same size and timeouts.
fn raw_pool() -> deadpool_redis::Pool {
    deadpool_redis::Pool::builder(deadpool_redis::Manager::new(redis_url()).unwrap())
        .max_size(POOL_SIZE)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .wait_timeout(Some(COMMAND_TIMEOUT))
        .create_timeout(Some(Duration::from_secs(2)))
        .recycle_timeout(Some(COMMAND_TIMEOUT))
        .build()
        .unwrap()
}

/// A baseline's connections: checked out of a deadpool-redis pool per command (its usual use,
/// with the pool's `PING` check on each checkout), or taken from the same kind of pool once
/// and shared (multiplexed), which is what `RedisCache` does.
#[derive(Clone)]
enum Raw {
    Pool(deadpool_redis::Pool),
    Shared(Arc<Vec<redis::aio::MultiplexedConnection>>),
}

impl Raw {
    async fn shared() -> Raw {
        let pool = raw_pool();
        let mut conns = Vec::new();
        for _ in 0..POOL_SIZE {
            conns.push(deadpool_redis::Connection::take(pool.get().await.unwrap()));
        }
        Raw::Shared(Arc::new(conns))
    }
}

/// The same work our API does: JSON encode + `SET … PX`, or `GET` + JSON decode.
async fn raw_get_set(
    conn: &mut impl redis::aio::ConnectionLike,
    i: u64,
    key: &str,
    value: &serde_json::Value,
) {
    if i.is_multiple_of(2) {
        let bytes = serde_json::to_vec(value).unwrap();
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(bytes)
            .arg("PX")
            .arg(60_000)
            .query_async(conn)
            .await
            .unwrap();
    } else {
        let got: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
        let _: Option<serde_json::Value> = got.map(|b| serde_json::from_slice(&b).unwrap());
    }
}

async fn raw_evalsha(
    conn: &mut impl redis::aio::ConnectionLike,
    script: &redis::Script,
    key: String,
) {
    let _: (i64, i64, i64) = script
        .key(key)
        .arg(1_000_000_000u64)
        .arg(60_000u64)
        .invoke_async(conn)
        .await
        .unwrap();
}

/// Runs `iters` calls of `op` spread over `TASKS` tasks; returns the wall time.
async fn concurrent<F, Fut>(iters: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(TASKS);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    op(t * per_task + i).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// A JSON document of exactly 1024 bytes once encoded.
fn payload() -> serde_json::Value {
    let mut value = serde_json::json!({ "timezone": "Europe/Berlin", "work_days": [1, 2, 3, 4, 5], "notes": "" });
    let pad = 1024 - serde_json::to_vec(&value).unwrap().len();
    value["notes"] = serde_json::Value::String("x".repeat(pad));
    assert_eq!(serde_json::to_vec(&value).unwrap().len(), 1024);
    value
}

/// Deletes a benchmark's keys with `SCAN` (never `KEYS`).
async fn cleanup(prefix: &str) {
    let all = RedisCache::new(config(""), RateLimitAlgorithm::default()).unwrap();
    all.delete_prefix(prefix).await.unwrap();
}

fn redis_get_set(c: &mut Criterion) {
    let rt = runtime();
    let prefix = format!("bench:{}:", std::process::id());
    let ours = Arc::new(RedisCache::new(config(&prefix), RateLimitAlgorithm::default()).unwrap());
    let value = Arc::new(payload());

    let mut group = c.benchmark_group("redis get/set 1 KiB JSON, 64 tasks");
    let mut ours_side = |b: &mut criterion::Bencher| {
        b.to_async(&rt).iter_custom(|iters| {
            let (ours, value) = (ours.clone(), value.clone());
            async move {
                let elapsed = concurrent(iters, move |i| {
                    let (ours, value) = (ours.clone(), value.clone());
                    async move {
                        let key = format!("k{}", i % 1000);
                        if i.is_multiple_of(2) {
                            ours.set_json(&key, &*value, Duration::from_secs(60))
                                .await
                                .unwrap();
                        } else {
                            let _: Option<serde_json::Value> = ours.get_json(&key).await.unwrap();
                        }
                    }
                })
                .await;
                record(iters, elapsed);
                elapsed
            }
        })
    };
    let raw_side = |raw: Raw| {
        let (rt, value, prefix) = (&rt, value.clone(), prefix.clone());
        move |b: &mut criterion::Bencher| {
            b.to_async(rt).iter_custom(|iters| {
                let (raw, value, prefix) = (raw.clone(), value.clone(), prefix.clone());
                async move {
                    let elapsed = concurrent(iters, move |i| {
                        let (raw, value, prefix) = (raw.clone(), value.clone(), prefix.clone());
                        async move {
                            let key = format!("{prefix}k{}", i % 1000);
                            match &raw {
                                Raw::Pool(pool) => {
                                    let mut conn = pool.get().await.unwrap();
                                    raw_get_set(&mut conn, i, &key, &value).await;
                                }
                                Raw::Shared(conns) => {
                                    let mut conn = conns[i as usize % conns.len()].clone();
                                    raw_get_set(&mut conn, i, &key, &value).await;
                                }
                            }
                        }
                    })
                    .await;
                    record(iters, elapsed);
                    elapsed
                }
            })
        }
    };
    let mut pooled_side = raw_side(Raw::Pool(raw_pool()));
    let mut shared_side = raw_side(rt.block_on(Raw::shared()));
    for round in 1..=ROUNDS {
        group.bench_function(format!("RedisCache #{round}"), &mut ours_side);
        commit("redis ours");
        group.bench_function(format!("raw deadpool-redis #{round}"), &mut pooled_side);
        commit("redis raw");
        group.bench_function(format!("raw shared connections #{round}"), &mut shared_side);
        commit("redis shared");
    }
    group.finish();
    let ours_rate = rate("redis ours");
    row(
        "redis get/set 1 KiB JSON, 64 tasks",
        ours_rate,
        "raw deadpool-redis (checkout per command)",
        rate("redis raw"),
    );
    row(
        "redis get/set 1 KiB JSON, 64 tasks",
        ours_rate,
        "raw deadpool-redis connections, shared",
        rate("redis shared"),
    );
    match ours_rate.and_then(|_| redis_benchmark()) {
        Some((get, set, mixed)) => {
            println!("   redis-benchmark -c 64 -d 1024 -t get,set: GET {get:.0}/s, SET {set:.0}/s");
            row(
                "redis get/set 1 KiB JSON, 64 tasks vs the practical limit",
                ours_rate,
                "redis-benchmark (50/50 mix)",
                Some(mixed),
            );
        }
        None => println!("   practical-limit row skipped (filtered, or redis-benchmark missing)"),
    }
    rt.block_on(cleanup(&prefix));
}

/// GET and SET requests per second from `redis-benchmark`, and the rate of a 50/50 mix of
/// them (harmonic mean), the shape of our workload.
fn redis_benchmark() -> Option<(f64, f64, f64)> {
    let url = url::Url::parse(&redis_url()).ok()?;
    let port = url.port().unwrap_or(6379).to_string();
    let out = Command::new("redis-benchmark")
        .args(["-h", url.host_str()?, "-p", &port])
        .args([
            "-c", "64", "-d", "1024", "-t", "get,set", "-n", "50000", "-q",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Progress lines share the prefix but say `rps=`; the summary line's second word is
    // the rate.
    let find = |name: &str| {
        text.split(['\r', '\n'])
            .filter_map(|l| l.strip_prefix(name))
            .find_map(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
    };
    let (get, set) = (find("GET:")?, find("SET:")?);
    Some((get, set, 2.0 / (1.0 / get + 1.0 / set)))
}

fn rate_limit_decisions(c: &mut Criterion) {
    let rt = runtime();
    let prefix = format!("bench-rl:{}:", std::process::id());
    let ours =
        Arc::new(RedisCache::new(config(&prefix), RateLimitAlgorithm::SlidingWindow).unwrap());
    let script = Arc::new(redis::Script::new(&redis_scripts::sliding_window()));

    let mut group = c.benchmark_group("rate-limit decisions (sliding window), 64 tasks");
    let mut ours_side = |b: &mut criterion::Bencher| {
        b.to_async(&rt).iter_custom(|iters| {
            let ours = ours.clone();
            async move {
                let elapsed = concurrent(iters, move |i| {
                    let ours = ours.clone();
                    async move {
                        let key = format!("user{}", i % 100);
                        ours.check(&key, 1_000_000_000, Duration::from_secs(60))
                            .await
                            .unwrap();
                    }
                })
                .await;
                record(iters, elapsed);
                elapsed
            }
        })
    };
    let raw_side = |raw: Raw| {
        let (rt, script, prefix) = (&rt, script.clone(), prefix.clone());
        move |b: &mut criterion::Bencher| {
            b.to_async(rt).iter_custom(|iters| {
                let (raw, script, prefix) = (raw.clone(), script.clone(), prefix.clone());
                async move {
                    let elapsed = concurrent(iters, move |i| {
                        let (raw, script, prefix) = (raw.clone(), script.clone(), prefix.clone());
                        async move {
                            let key = format!("{prefix}raw:user{}", i % 100);
                            match &raw {
                                Raw::Pool(pool) => {
                                    let mut conn = pool.get().await.unwrap();
                                    raw_evalsha(&mut conn, &script, key).await;
                                }
                                Raw::Shared(conns) => {
                                    let mut conn = conns[i as usize % conns.len()].clone();
                                    raw_evalsha(&mut conn, &script, key).await;
                                }
                            }
                        }
                    })
                    .await;
                    record(iters, elapsed);
                    elapsed
                }
            })
        }
    };
    let mut pooled_side = raw_side(Raw::Pool(raw_pool()));
    let mut shared_side = raw_side(rt.block_on(Raw::shared()));
    for round in 1..=ROUNDS {
        group.bench_function(format!("RedisCache::check #{round}"), &mut ours_side);
        commit("rl ours");
        group.bench_function(format!("raw EVALSHA, pooled #{round}"), &mut pooled_side);
        commit("rl raw");
        group.bench_function(format!("raw EVALSHA, shared #{round}"), &mut shared_side);
        commit("rl shared");
    }
    group.finish();
    row(
        "rate-limit decisions (sliding window), 64 tasks",
        rate("rl ours"),
        "raw EVALSHA (checkout per command)",
        rate("rl raw"),
    );
    row(
        "rate-limit decisions (sliding window), 64 tasks",
        rate("rl ours"),
        "raw EVALSHA, shared connections",
        rate("rl shared"),
    );
    rt.block_on(cleanup(&prefix));
}

fn memory_get(c: &mut Criterion) {
    let rt = runtime();
    let ours = MemoryCache::new(MemoryConfig::default());
    // Raw moka configured for the same job: bounded by bytes, a TTL per entry.
    let raw: moka::sync::Cache<String, (Arc<[u8]>, Instant)> = moka::sync::Cache::builder()
        .max_capacity(64 << 20)
        .weigher(|k: &String, v: &(Arc<[u8]>, Instant)| (k.len() + v.0.len()) as u32)
        .expire_after(Deadline)
        .build();
    let value = serde_json::to_vec(&payload()).unwrap();
    let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
    rt.block_on(async {
        for key in &keys {
            ours.set(key, &value, Duration::from_secs(600))
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(600);
            raw.insert(key.clone(), (Arc::from(&value[..]), deadline));
        }
    });

    let mut group = c.benchmark_group("memory get 1 KiB, one task");
    let mut ours_side = |b: &mut criterion::Bencher| {
        b.to_async(&rt).iter_custom(|iters| {
            let (ours, keys) = (&ours, &keys);
            async move {
                let started = Instant::now();
                for i in 0..iters as usize {
                    std::hint::black_box(ours.get(&keys[i % 1000]).await.unwrap());
                }
                let elapsed = started.elapsed();
                record(iters, elapsed);
                elapsed
            }
        })
    };
    let mut raw_side = |b: &mut criterion::Bencher| {
        b.to_async(&rt).iter_custom(|iters| {
            let (raw, keys) = (&raw, &keys);
            async move {
                let started = Instant::now();
                for i in 0..iters as usize {
                    // The same output as the Cache trait: an owned copy of the bytes.
                    std::hint::black_box(raw.get(&keys[i % 1000]).map(|v| v.0.to_vec()));
                }
                let elapsed = started.elapsed();
                record(iters, elapsed);
                elapsed
            }
        })
    };
    for round in 1..=ROUNDS {
        group.bench_function(format!("MemoryCache #{round}"), &mut ours_side);
        commit("memory ours");
        group.bench_function(format!("raw moka #{round}"), &mut raw_side);
        commit("memory raw");
    }
    group.finish();
    row(
        "memory get 1 KiB, one task",
        rate("memory ours"),
        "raw moka",
        rate("memory raw"),
    );
}

/// Each entry expires at the deadline stored with it.
struct Deadline;

impl moka::Expiry<String, (Arc<[u8]>, Instant)> for Deadline {
    fn expire_after_create(
        &self,
        _: &String,
        value: &(Arc<[u8]>, Instant),
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.1.saturating_duration_since(created_at))
    }
}

fn quick() -> Criterion {
    Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = quick();
    targets = redis_get_set, rate_limit_decisions, memory_get
}
criterion_main!(benches);
