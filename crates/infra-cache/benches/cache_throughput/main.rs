//! Our cache against raw baselines, measured by criterion in one run; after each pair it
//! prints our rate, the baseline's rate and the ratio (ours / baseline).
//!
//! `cargo bench -p infra-cache` (or `cargo xtask bench cache`). Needs Redis on `REDIS_URL`
//! (default 127.0.0.1:6379), `redis-benchmark` on PATH for the practical-limit row, and
//! `redis-server` 7+ and `redis-cli` for the Redis Cluster rows (`cluster.rs`), which start a
//! cluster of their own.
// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

mod cluster;
mod metrics_overhead;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use infra_cache::{
    MemoryCache, MemoryConfig, RateLimitAlgorithm, RedisCache, RedisConfig, redis_scripts,
};
use infra_core::testkit::bench_report::{Goal, Row, Side as ReportSide, process_cpu};
use infra_core::{Cache, CacheExt, RateLimiter};
use tokio::runtime::Runtime;

/// Concurrent tasks of the Redis workloads, as `redis-benchmark -c 64`.
const TASKS: u64 = 64;
const POOL_SIZE: usize = 64;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Each side is measured this many times, alternating, so drift in the machine's load (other
/// builds, a neighbour on the host) hits both sides alike; the summary also gives the median of
/// the per-round ratios, which one disturbed round cannot move.
const ROUNDS: usize = 6;

/// Samples: each timed call criterion made of the function being measured right now, with
/// the latency of every operation in it (nanoseconds).
static CALLS: Mutex<Vec<Call>> = Mutex::new(Vec::new());

/// One timed call of criterion's: operations, wall time, CPU time of this process (the client),
/// and sampled latencies in nanoseconds.
struct Call {
    ops: u64,
    elapsed: Duration,
    cpu: Duration,
    latencies: Vec<u32>,
}

/// What each side did in criterion's measurement samples of this run: operations, time, and
/// every operation's latency.
static TALLY: Mutex<Option<HashMap<String, Side>>> = Mutex::new(None);

#[derive(Default)]
struct Side {
    ops: u64,
    elapsed: Duration,
    cpu: Duration,
    latencies: Vec<u32>,
    /// The rate of each round, in order.
    rounds: Vec<f64>,
}

/// Samples per measurement (warm-up calls come before them).
const SAMPLES: usize = 10;

fn record(ops: u64, elapsed: Duration, cpu: Duration, latencies: Vec<u32>) {
    CALLS.lock().unwrap().push(Call {
        ops,
        elapsed,
        cpu,
        latencies,
    });
}

/// Adds the measurement samples of the function criterion just ran to `side`, leaving out
/// its warm-up calls (which come first).
fn commit(side: &str) {
    let mut calls = CALLS.lock().unwrap();
    let first = calls.len().saturating_sub(SAMPLES);
    if calls.is_empty() {
        return;
    }
    let mut tally = TALLY.lock().unwrap();
    let entry = tally
        .get_or_insert_with(HashMap::new)
        .entry(side.to_owned())
        .or_default();
    let (mut ops, mut elapsed) = (0, Duration::ZERO);
    for call in calls.drain(..).skip(first) {
        ops += call.ops;
        elapsed += call.elapsed;
        entry.cpu += call.cpu;
        entry.latencies.extend(call.latencies);
    }
    entry.ops += ops;
    entry.elapsed += elapsed;
    entry.rounds.push(ops as f64 / elapsed.as_secs_f64());
}

/// The median over rounds of ours / baseline in the same round.
fn median_round_ratio(ours: &str, baseline: &str) -> Option<f64> {
    let tally = TALLY.lock().unwrap();
    let tally = tally.as_ref()?;
    let (ours, base) = (&tally.get(ours)?.rounds, &tally.get(baseline)?.rounds);
    let mut ratios: Vec<f64> = ours.iter().zip(base).map(|(o, b)| o / b).collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let mid = ratios.len() / 2;
    Some(if ratios.len().is_multiple_of(2) {
        (ratios[mid - 1] + ratios[mid]) / 2.0
    } else {
        ratios[mid]
    })
}

/// Rate, p50, p99 and client CPU per operation of a side, or `None` when a criterion filter
/// skipped it.
fn stats(side: &str) -> Option<(f64, Duration, Duration, Duration)> {
    let mut tally = TALLY.lock().unwrap();
    let side = tally.as_mut()?.get_mut(side)?;
    side.latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((side.latencies.len().max(1) - 1) as f64 * q).round() as usize;
        Duration::from_nanos(side.latencies.get(i).copied().unwrap_or(0).into())
    };
    Some((
        side.ops as f64 / side.elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
        side.cpu / u32::try_from(side.ops.max(1)).unwrap_or(u32::MAX),
    ))
}

fn rate(side: &str) -> Option<f64> {
    stats(side).map(|s| s.0)
}

fn line(label: &str, side: &str) {
    if let Some((rate, p50, p99, cpu)) = stats(side) {
        println!(
            "   {label:<52} {rate:>9.0}/s  p50 {:>7.2} µs  p99 {:>7.2} µs  client CPU {:.2} µs/op",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            cpu.as_secs_f64() * 1e6
        );
    }
}

/// A side's figures for `cargo xtask bench`'s table.
fn report_side(label: &str, side: &str) -> Option<ReportSide> {
    let (rate, p50, p99, cpu) = stats(side)?;
    Some(
        ReportSide::new(label, rate)
            .with_latency(p50, p99)
            .with_cpu_per_op(cpu),
    )
}

/// The summary of one workload: the strongest of the `strong` baselines first (whichever was
/// fastest in this run), then ours and the ratio, then the other baselines for context; and
/// the same as a row for `cargo xtask bench`'s table. Nothing when a criterion filter skipped
/// a side.
fn summary(
    name: &str,
    strong: &[(&str, &str)],
    ours: (&str, &str),
    weaker: &[(&str, &str)],
) -> Option<Row> {
    let (strongest, base) = strong
        .iter()
        .filter_map(|s| Some((*s, rate(s.1)?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let us = rate(ours.1)?;
    let mut row = Row::new("infra-cache", name, "ops/s")
        .ours(report_side(ours.0, ours.1)?)
        .baseline(report_side(strongest.0, strongest.1)?);
    println!("\n>> {name}");
    line(strongest.0, strongest.1);
    line(ours.0, ours.1);
    println!("   ratio ours / strongest baseline: {:.3}", us / base);
    if let Some(median) = median_round_ratio(ours.1, strongest.1) {
        println!("   median of the per-round ratios: {median:.3} ({ROUNDS} rounds)");
    }
    let others = strong.iter().filter(|s| s.1 != strongest.1);
    for (label, side) in others.chain(weaker) {
        if let Some(rate) = rate(side) {
            line(label, side);
            println!("      (ours / this: {:.3})", us / rate);
            row = row.other(report_side(label, side)?);
        }
    }
    println!();
    Some(row)
}

/// One connection per CPU: the other strong way to share multiplexed connections.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
/// and shared (multiplexed) by every task, which is what `RedisCache` does. Sharing few
/// connections is the strong use: a multiplexed connection writes every queued request in one
/// system call, so the more tasks share it the cheaper each command.
#[derive(Clone)]
enum Raw {
    Pool(deadpool_redis::Pool),
    Shared(Arc<Vec<redis::aio::MultiplexedConnection>>),
}

impl Raw {
    /// `n` connections, command `i` on connection `i % n`.
    async fn shared(n: usize) -> Raw {
        let pool = raw_pool();
        let mut conns = Vec::new();
        for _ in 0..n {
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

/// Runs `iters` calls of `op` spread over `TASKS` tasks, records them, and returns the wall
/// time.
async fn concurrent<F, Fut>(iters: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(TASKS);
    let cpu = process_cpu();
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task as usize);
                for i in 0..per_task {
                    let t0 = Instant::now();
                    op(t * per_task + i).await;
                    latencies.push(nanos(t0.elapsed()));
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    record(per_task * TASKS, elapsed, process_cpu() - cpu, latencies);
    elapsed
}

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
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
                concurrent(iters, move |i| {
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
                .await
            }
        })
    };
    let raw_side = |raw: Raw| {
        let (rt, value, prefix) = (&rt, value.clone(), prefix.clone());
        move |b: &mut criterion::Bencher| {
            b.to_async(rt).iter_custom(|iters| {
                let (raw, value, prefix) = (raw.clone(), value.clone(), prefix.clone());
                async move {
                    concurrent(iters, move |i| {
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
                    .await
                }
            })
        }
    };
    let mut pooled_side = raw_side(Raw::Pool(raw_pool()));
    let mut one_side = raw_side(rt.block_on(Raw::shared(1)));
    let mut per_cpu_side = raw_side(rt.block_on(Raw::shared(cpus())));
    for round in 1..=ROUNDS {
        group.bench_function(
            format!("raw, one shared connection #{round}"),
            &mut one_side,
        );
        commit("redis shared 1");
        group.bench_function(format!("RedisCache #{round}"), &mut ours_side);
        commit("redis ours");
        group.bench_function(
            format!("raw, a shared connection per CPU #{round}"),
            &mut per_cpu_side,
        );
        commit("redis shared cpu");
        group.bench_function(format!("raw deadpool-redis #{round}"), &mut pooled_side);
        commit("redis raw");
    }
    group.finish();
    let row = summary(
        "redis get/set 1 KiB JSON, 64 tasks",
        &[
            (
                "raw redis-rs, one multiplexed connection shared",
                "redis shared 1",
            ),
            (
                "raw redis-rs, a multiplexed connection per CPU shared",
                "redis shared cpu",
            ),
        ],
        ("RedisCache get_json/set_json", "redis ours"),
        &[("raw deadpool-redis, checkout per command", "redis raw")],
    );
    let ours_rate = rate("redis ours");
    let mut practical_limit = None;
    match ours_rate.and_then(|_| redis_benchmark()) {
        Some((get, set, mixed)) => {
            println!("   redis-benchmark -c 64 -d 1024 -t get,set: GET {get:.0}/s, SET {set:.0}/s");
            if let Some(ours) = ours_rate {
                println!(
                    "   redis-benchmark 50/50 mix {mixed:.0}/s (ours / this: {:.3})\n",
                    ours / mixed
                );
            }
            practical_limit = Some(ReportSide::new(
                "redis-benchmark -c 64 -d 1024, 50/50 GET/SET mix",
                mixed,
            ));
        }
        None => println!("   practical-limit row skipped (filtered, or redis-benchmark missing)"),
    }
    if let Some(mut row) = row {
        if let Some(side) = practical_limit {
            row = row.other(side);
        }
        row.goal(Goal::ratio_at_least(0.95))
            .emit()
            .expect("bench report written");
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
                concurrent(iters, move |i| {
                    let ours = ours.clone();
                    async move {
                        let key = format!("user{}", i % 100);
                        ours.check(&key, 1_000_000_000, Duration::from_secs(60))
                            .await
                            .unwrap();
                    }
                })
                .await
            }
        })
    };
    let raw_side = |raw: Raw| {
        let (rt, script, prefix) = (&rt, script.clone(), prefix.clone());
        move |b: &mut criterion::Bencher| {
            b.to_async(rt).iter_custom(|iters| {
                let (raw, script, prefix) = (raw.clone(), script.clone(), prefix.clone());
                async move {
                    concurrent(iters, move |i| {
                        let (raw, script, prefix) = (raw.clone(), script.clone(), prefix.clone());
                        async move {
                            // The layout and length of ours' keys (`rawu` for `user`), so
                            // both sides ask the same of Redis: the script builds two more
                            // keys from it and Redis hashes all three.
                            let key = format!(
                                "{prefix}rl:sliding_window:1000000000:60000:rawu{}",
                                i % 100
                            );
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
                    .await
                }
            })
        }
    };
    let mut pooled_side = raw_side(Raw::Pool(raw_pool()));
    let mut one_side = raw_side(rt.block_on(Raw::shared(1)));
    let mut per_cpu_side = raw_side(rt.block_on(Raw::shared(cpus())));
    for round in 1..=ROUNDS {
        group.bench_function(
            format!("raw EVALSHA, one shared connection #{round}"),
            &mut one_side,
        );
        commit("rl shared 1");
        group.bench_function(format!("RedisCache::check #{round}"), &mut ours_side);
        commit("rl ours");
        group.bench_function(
            format!("raw EVALSHA, a shared connection per CPU #{round}"),
            &mut per_cpu_side,
        );
        commit("rl shared cpu");
        group.bench_function(format!("raw EVALSHA, pooled #{round}"), &mut pooled_side);
        commit("rl raw");
    }
    group.finish();
    let row = summary(
        "rate-limit decisions (sliding window), 64 tasks",
        &[
            (
                "raw EVALSHA, one multiplexed connection shared",
                "rl shared 1",
            ),
            (
                "raw EVALSHA, a multiplexed connection per CPU shared",
                "rl shared cpu",
            ),
        ],
        ("RedisCache::check", "rl ours"),
        &[("raw EVALSHA, checkout per command", "rl raw")],
    );
    if let Some(row) = row {
        row.goal(Goal::ratio_at_least(0.95))
            .emit()
            .expect("bench report written");
    }
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
    // `MemoryCache::get` (the inherent method, which a concrete `MemoryCache` resolves to),
    // and the same call through the object-safe trait, as an `Arc<dyn Cache>` user makes it.
    let mut ours_side = |b: &mut criterion::Bencher| {
        b.to_async(&rt).iter_custom(|iters| {
            let (ours, keys) = (&ours, &keys);
            sampled(iters, move |i| async move {
                std::hint::black_box(ours.get(&keys[i % 1000]).await.unwrap());
            })
        })
    };
    let dyn_ours: &dyn Cache = &ours;
    let mut trait_side = |b: &mut criterion::Bencher| {
        b.to_async(&rt).iter_custom(|iters| {
            let keys = &keys;
            sampled(iters, move |i| async move {
                std::hint::black_box(dyn_ours.get(&keys[i % 1000]).await.unwrap());
            })
        })
    };
    let mut raw_side = |b: &mut criterion::Bencher| {
        b.to_async(&rt).iter_custom(|iters| {
            let (raw, keys) = (&raw, &keys);
            sampled(iters, move |i| async move {
                // The same output as the Cache trait: an owned copy of the bytes.
                std::hint::black_box(raw.get(&keys[i % 1000]).map(|v| v.0.to_vec()));
            })
        })
    };
    for round in 1..=ROUNDS {
        group.bench_function(format!("raw moka #{round}"), &mut raw_side);
        commit("memory raw");
        group.bench_function(format!("MemoryCache #{round}"), &mut ours_side);
        commit("memory ours");
        group.bench_function(
            format!("MemoryCache as dyn Cache #{round}"),
            &mut trait_side,
        );
        commit("memory trait");
    }
    group.finish();
    let row = summary(
        "memory get 1 KiB, one task",
        &[("raw moka (same weigher and per-entry expiry)", "memory raw")],
        ("MemoryCache::get", "memory ours"),
        &[],
    );
    if let Some(row) = row {
        row.goal(Goal::ratio_at_least(0.90))
            .emit()
            .expect("bench report written");
    }
    if let (Some(ours), Some(raw)) = (stats("memory trait"), rate("memory raw")) {
        line(
            "MemoryCache through &dyn Cache (boxed future)",
            "memory trait",
        );
        println!(
            "      (ours through the trait / raw moka: {:.3})\n",
            ours.0 / raw
        );
    }
    if let (Some(ours), Some(raw)) = (
        report_side(
            "MemoryCache through &dyn Cache (boxed future)",
            "memory trait",
        ),
        report_side("raw moka (same weigher and per-entry expiry)", "memory raw"),
    ) {
        Row::new(
            "infra-cache",
            "memory get 1 KiB through &dyn Cache",
            "ops/s",
        )
        .ours(ours)
        .baseline(raw)
        .emit()
        .expect("bench report written");
    }
}

/// Runs `iters` calls of `op` one after the other, timing every 64th on its own for the
/// latency percentiles (timing each would cost as much as the call); records them and
/// returns the wall time.
async fn sampled<F, Fut>(iters: u64, op: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut latencies = Vec::with_capacity(iters as usize / 64 + 1);
    let cpu = process_cpu();
    let started = Instant::now();
    for i in 0..iters as usize {
        if i % 64 == 0 {
            let t0 = Instant::now();
            op(i).await;
            latencies.push(nanos(t0.elapsed()));
        } else {
            op(i).await;
        }
    }
    let elapsed = started.elapsed();
    record(iters, elapsed, process_cpu() - cpu, latencies);
    elapsed
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
    // `cargo xtask bench --quick` only proves the plumbing: a fraction of the time.
    let (warm_up, measure) = if infra_core::testkit::bench_report::quick() {
        (Duration::from_millis(100), Duration::from_millis(300))
    } else {
        (Duration::from_millis(500), Duration::from_millis(1000))
    };
    Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(warm_up)
        .measurement_time(measure)
        .without_plots()
}

criterion_group! {
    name = benches;
    config = quick();
    targets = redis_get_set, rate_limit_decisions, memory_get, cluster::cluster_get_set,
        cluster::cluster_rate_limit, metrics_overhead::metrics_overhead
}
criterion_main!(benches);
