//! `cargo xtask faults redis-cluster`: a master of a six-node Redis Cluster (three masters,
//! three replicas, a cluster of this task's own) SIGKILLed under cache writes, reads and
//! rate-limit decisions; its replica is promoted and the same `RedisClusterCache` carries on.
//!
//! Redis Cluster replicates asynchronously: a master acknowledges a write before its replica
//! has it, so writes the killed master acknowledged in the moment before the kill can be
//! missing on the promoted replica. The scenario counts them (lost / acknowledged) and how long
//! before the kill the newest of them was acknowledged; that loss is Redis Cluster's, stated
//! in docs/reliability.md. Anything else fails the scenario: a lost write that was on a
//! surviving master, or that was acknowledged after the kill.
//!
//! Recovery runs from the kill to the first write acknowledged in the killed master's slots
//! (the promoted replica taking them over): about the cluster's node timeout plus the
//! replica's election.
//!
//! On loopback a replica is a fraction of a millisecond behind its master, so the plain kill
//! (`redis-cluster`) rarely catches a write in flight. `redis-cluster-lagging-replica` shows
//! the loss the design allows: the killed master's replica is frozen (`SIGSTOP`) and its
//! replication link cut for `LAG` just before the kill, as a replica behind on a busy link
//! would be, and the writes the master acknowledged in that time are gone after the
//! promotion.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use infra::cache::{RateLimitAlgorithm, RedisClusterCache, RedisClusterConfig};
use infra::core::testkit::redis_cluster::LocalRedisCluster;
use infra::{Cache, RateLimiter};
use tokio::sync::Mutex;

use super::FaultReport;

/// Load tasks; task `t` writes keys of hash tag `t % 3`, one tag per master.
const TASKS: usize = 16;
/// How long masters are marked failing and replaced: short for CI, long enough that a loaded
/// machine does not fail a master over by itself.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);
/// Give up waiting for the promotion after this.
const PATIENCE: Duration = Duration::from_secs(30);
/// How far behind the lagging variant's replica falls before its master is killed.
const LAG: Duration = Duration::from_millis(300);
/// Load before the kill.
const WARM: Duration = Duration::from_millis(1500);

/// One acknowledged write: its key, which master's tag it had, when it was sent and when
/// its acknowledgement was seen.
struct Ack {
    key: String,
    tag: usize,
    sent: Duration,
    at: Duration,
}

/// `redis-cluster`: a master killed, its replica in sync.
pub fn master_killed(runtime: &tokio::runtime::Runtime) -> Result<FaultReport> {
    run(runtime, false)
}

/// `redis-cluster-lagging-replica`: the same, its replica [`LAG`] behind.
pub fn master_killed_replica_lagging(runtime: &tokio::runtime::Runtime) -> Result<FaultReport> {
    run(runtime, true)
}

fn run(runtime: &tokio::runtime::Runtime, lagging_replica: bool) -> Result<FaultReport> {
    let mut cluster = LocalRedisCluster::builder()
        .node_timeout(NODE_TIMEOUT)
        .start()
        .context("starting a local Redis Cluster (redis-server 7 and redis-cli)")?;
    let masters = cluster.masters()?;
    // A hash tag per master, so each task's keys live on one known master.
    let mut tags = Vec::new();
    for &master in &masters {
        let tag = (0..)
            .map(|i| format!("m{i}"))
            .find(|t| {
                cluster
                    .key_slot(t)
                    .and_then(|slot| cluster.master_of(slot))
                    .is_ok_and(|port| port == master)
            })
            .context("a hash tag on each master")?;
        tags.push(tag);
    }
    let victim = 1;
    let config = RedisClusterConfig::new(cluster.urls())?
        .with_key_prefix("faults:")
        .with_pool_size(8)
        .with_command_timeout(Duration::from_millis(300));
    let cache = Arc::new(RedisClusterCache::new(
        config,
        RateLimitAlgorithm::SlidingWindow,
    )?);

    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let fallbacks = Arc::new(AtomicU64::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let recovered_ms = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..TASKS)
        .map(|task| {
            let (cache, acks, failed, fallbacks, killed, recovered_ms, stop, tags) = (
                cache.clone(),
                acks.clone(),
                failed.clone(),
                fallbacks.clone(),
                killed.clone(),
                recovered_ms.clone(),
                stop.clone(),
                tags.clone(),
            );
            runtime.spawn(async move {
                let tag = task % tags.len();
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let key = format!("{{{}}}:w{task}:{i}", tags[tag]);
                    // Sent after the kill: the old master cannot have taken it. (Seen after
                    // the kill is not enough: a reply the master sent just before dying can
                    // be read by this task a moment later.)
                    let sent_after_kill = killed.load(Ordering::SeqCst);
                    let sent = started.elapsed();
                    match cache.set(&key, b"v", Duration::from_secs(600)).await {
                        Ok(()) => {
                            let at = started.elapsed();
                            if tag == victim && sent_after_kill {
                                let _ = recovered_ms.compare_exchange(
                                    0,
                                    at.as_millis() as u64,
                                    Ordering::SeqCst,
                                    Ordering::SeqCst,
                                );
                            }
                            acks.lock().await.push(Ack {
                                key: key.clone(),
                                tag,
                                sent,
                                at,
                            });
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            // Down: don't spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    if cache.get(&key).await.is_err() {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    let limited = format!("user{}", task % 4);
                    match cache
                        .check(&limited, 1_000_000, Duration::from_secs(60))
                        .await
                    {
                        Ok(decision) if decision.fallback => {
                            fallbacks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(WARM);
    let replica = cluster
        .topology(masters[0])?
        .into_iter()
        .find(|n| n.master_port == Some(masters[victim]))
        .map(|n| n.port)
        .context("the victim's replica")?;
    if lagging_replica {
        // Frozen, then cut off: what the master acknowledges from here on never reaches it
        // (what it had sent before waits in the replica's socket buffer and is applied).
        cluster.signal(replica, "STOP")?;
        cluster.cli(masters[victim], &["CLIENT", "KILL", "TYPE", "replica"])?;
        std::thread::sleep(LAG);
    }
    cluster.kill(masters[victim])?;
    let killed_at = started.elapsed();
    killed.store(true, Ordering::SeqCst);
    if lagging_replica {
        cluster.signal(replica, "CONT")?;
    }
    let deadline = Instant::now() + PATIENCE;
    while recovered_ms.load(Ordering::SeqCst) == 0 {
        if Instant::now() > deadline {
            stop.store(true, Ordering::SeqCst);
            bail!("no write reached the killed master's slots within {PATIENCE:?} of the kill");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Keep the load on a moment after the promotion: writes there must all stay.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        runtime.block_on(worker)?;
    }
    let recovered = Duration::from_millis(recovered_ms.load(Ordering::SeqCst));

    let acks = runtime.block_on(async { std::mem::take(&mut *acks.lock().await) });
    // (sent, acknowledged) of each lost write, by master tag.
    let mut lost_by_tag: HashMap<usize, Vec<(Duration, Duration)>> = HashMap::new();
    runtime.block_on(async {
        for ack in &acks {
            // A read that errors (the client still settling on the new topology) is asked
            // again: only a key the cluster says is absent is lost.
            let deadline = Instant::now() + PATIENCE;
            let present = loop {
                match cache.exists(&ack.key).await {
                    Ok(present) => break present,
                    Err(err) if Instant::now() > deadline => {
                        return Err(anyhow::anyhow!("reading the writes back: {err}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            if !present {
                lost_by_tag
                    .entry(ack.tag)
                    .or_default()
                    .push((ack.sent, ack.at));
            }
        }
        anyhow::Ok(())
    })?;
    let lost: u64 = lost_by_tag.values().map(|v| v.len() as u64).sum();
    for (&tag, ats) in &lost_by_tag {
        if tag != victim {
            bail!(
                "{} acknowledged writes on a surviving master are missing",
                ats.len()
            );
        }
        if let Some((sent, _)) = ats.iter().find(|(sent, _)| *sent >= killed_at) {
            bail!(
                "a write sent {} ms after the kill is missing",
                (*sent - killed_at).as_millis()
            );
        }
    }
    let window = lost_by_tag
        .get(&victim)
        .and_then(|ats| ats.iter().map(|(_, at)| *at).min())
        .map(|oldest| killed_at.saturating_sub(oldest));
    let on_victim = acks
        .iter()
        .filter(|a| a.tag == victim && a.sent < killed_at)
        .count();
    Ok(FaultReport {
        scenario: if lagging_replica {
            "redis-cluster-lagging-replica"
        } else {
            "redis-cluster"
        },
        fault: format!(
            "one of 3 masters SIGKILLed at {:.1}s (node timeout {} s){}, 16 tasks of \
             set/get/rate-limit; its replica promoted",
            killed_at.as_secs_f64(),
            NODE_TIMEOUT.as_secs(),
            if lagging_replica {
                format!(
                    ", its replica cut off for the {} ms before",
                    LAG.as_millis()
                )
            } else {
                String::new()
            }
        ),
        lost,
        acknowledged: acks.len() as u64,
        failed_calls: failed.load(Ordering::SeqCst),
        recovery: recovered.saturating_sub(killed_at),
        note: format!(
            "lost = writes the killed master acknowledged before its replica had them \
             (asynchronous replication): {lost} of the {on_victim} it acknowledged{}; none \
             lost on the other masters or after the promotion; {} rate-limit decisions \
             answered by the fail-open policy meanwhile",
            match window {
                Some(w) => format!(", all within {} ms before the kill", w.as_millis()),
                None => String::new(),
            },
            fallbacks.load(Ordering::SeqCst)
        ),
        section: None,
    })
}
