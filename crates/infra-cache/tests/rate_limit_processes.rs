//! Rate limiting stays exact across processes: four processes (this test binary, running
//! `child_decider`) decide on one key at the same moment, 240 calls against a limit of 100,
//! and exactly 100 are admitted — with every algorithm, on one Redis and on Redis Cluster.
//!
//! The window is a day, so no window boundary or token refill falls inside a run (a run that
//! straddles a day boundary is repeated once with a fresh key).

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infra_cache::{RateLimitAlgorithm, RedisCache, RedisConfig};
use infra_core::RateLimiter;
use serde_json::{Value, json};

/// The child's orders, as JSON; set only by this test for its own child processes.
const CHILD_ENV: &str = "INFRA_CACHE_TEST_DECIDER";
const PROCESSES: usize = 4;
/// Decisions per process: `TASKS` concurrent tasks of `ROUNDS` calls each.
const TASKS: usize = 20;
const ROUNDS: usize = 3;
const LIMIT: u64 = 100;
const WINDOW: Duration = Duration::from_secs(86_400);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The limiter a child builds from its orders.
fn limiter(orders: &Value) -> Arc<dyn RateLimiter> {
    let algorithm = RateLimitAlgorithm::ALL
        .into_iter()
        .find(|a| a.as_str() == orders["algorithm"])
        .unwrap();
    let prefix = orders["prefix"].as_str().unwrap();
    let timeout = Duration::from_secs(10);
    match orders["backend"].as_str().unwrap() {
        "redis" => {
            let config = RedisConfig::new(orders["target"].as_str().unwrap())
                .with_key_prefix(prefix)
                .with_command_timeout(timeout);
            Arc::new(RedisCache::new(config, algorithm).unwrap())
        }
        #[cfg(feature = "redis-cluster")]
        "cluster" => {
            let nodes = orders["target"].as_str().unwrap().split(',');
            let config = infra_cache::RedisClusterConfig::new(nodes)
                .unwrap()
                .with_key_prefix(prefix)
                .with_command_timeout(timeout);
            Arc::new(infra_cache::RedisClusterCache::new(config, algorithm).unwrap())
        }
        other => panic!("unknown backend {other}"),
    }
}

/// Run by the parent as a child process (ignored otherwise): waits for the common start,
/// makes its decisions and prints how many were admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the cross-process tests"]
async fn child_decider() {
    let Ok(raw) = std::env::var(CHILD_ENV) else {
        return;
    };
    let orders: Value = serde_json::from_str(&raw).unwrap();
    let limiter = limiter(&orders);
    let key = orders["key"].as_str().unwrap().to_owned();
    // Connections open before the start, so the processes contend for the key, not for a
    // connection.
    limiter.check("warm-up", 1, WINDOW).await.unwrap();
    let start = orders["start_ms"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(start.saturating_sub(now_ms()))).await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (limiter, key) = (limiter.clone(), key.clone());
            tokio::spawn(async move {
                let mut admitted = 0u64;
                for _ in 0..ROUNDS {
                    let decision = limiter.check(&key, LIMIT, WINDOW).await.unwrap();
                    assert!(!decision.fallback, "{decision:?}");
                    admitted += u64::from(decision.allowed);
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    println!("admitted={admitted}");
}

/// Runs `PROCESSES` children on `backend` and returns how many calls they admitted in all, or
/// `None` when the run straddled a window boundary.
fn admitted_across_processes(
    backend: &str,
    target: &str,
    prefix: &str,
    algorithm: RateLimitAlgorithm,
    attempt: usize,
) -> Option<u64> {
    let window_ms = WINDOW.as_millis() as u64;
    let before = now_ms() / window_ms;
    let orders = json!({
        "backend": backend,
        "target": target,
        "prefix": prefix,
        "algorithm": algorithm.as_str(),
        "key": format!("shared-{attempt}"),
        // Time for every child to start and connect on a loaded machine.
        "start_ms": now_ms() + 3_000,
    });
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "child_decider", "--nocapture"])
                .env(CHILD_ENV, orders.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let admitted: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("admitted="))
            .unwrap_or_else(|| panic!("no count from the child: {text}"))
            .parse()
            .unwrap();
        total += admitted;
    }
    (now_ms() / window_ms == before).then_some(total)
}

fn assert_exact(backend: &str, target: &str, prefix: &str) {
    assert!((PROCESSES * TASKS * ROUNDS) as u64 > 2 * LIMIT);
    for algorithm in RateLimitAlgorithm::ALL {
        let admitted = (0..2)
            .find_map(|attempt| {
                admitted_across_processes(backend, target, prefix, algorithm, attempt)
            })
            .expect("two runs in a row straddled a window boundary");
        assert_eq!(
            admitted,
            LIMIT,
            "{backend}, {}: {} calls from {PROCESSES} processes",
            algorithm.as_str(),
            PROCESSES * TASKS * ROUNDS
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_admits_exactly_the_limit_across_processes() {
    let prefix = support::namespace("rl-processes");
    let target = support::redis_url();
    let (target2, prefix2) = (target.clone(), prefix.clone());
    tokio::task::spawn_blocking(move || assert_exact("redis", &target2, &prefix2))
        .await
        .unwrap();
    support::cleanup(&support::redis_cache_with_prefix(&prefix)).await;
}

#[cfg(feature = "redis-cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_admits_exactly_the_limit_across_processes() {
    let shared = support::cluster::shared();
    let prefix = support::namespace("rl-processes-cluster");
    let target = shared.nodes_variable();
    let prefix2 = prefix.clone();
    tokio::task::spawn_blocking(move || assert_exact("cluster", &target, &prefix2))
        .await
        .unwrap();
    support::cluster::cleanup_prefix(shared, &prefix).await;
}
