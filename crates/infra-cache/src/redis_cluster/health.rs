//! The health check of `RedisClusterCache`: the cluster's shape first (`CLUSTER NODES`), then
//! the probe round trip through the cache's own calls.
//!
//! - **Unhealthy**: a slot range no reachable master serves (the cluster refuses its keys),
//!   named in the report; or the probe failed.
//! - **Degraded**: every slot is served, but a node is failing (`fail`, `fail?`, its link down)
//!   or a master has no live replica while the cluster has replicas (one more failure there
//!   and its slots are lost).
//! - **Healthy**: otherwise; the report names every master with its slots and replicas.

use async_trait::async_trait;
use infra_core::{Error, HealthCheck, Probe, Result, redact_url};
use redis::cluster_routing::{Route, SlotAddr};

use super::cache::RedisClusterCache;
use super::topology::{assess, parse_nodes};

#[async_trait]
impl HealthCheck for RedisClusterCache {
    fn service(&self) -> &str {
        "cache"
    }

    fn backend(&self) -> &str {
        "redis-cluster"
    }

    async fn probe(&self) -> Result<Probe> {
        let any = Route::new(0, SlotAddr::Master);
        let text: String = self
            .command(
                "CLUSTER NODES",
                redis::cmd("CLUSTER").arg("NODES").clone(),
                any,
            )
            .await?;
        let assessment = assess(&parse_nodes(&text));
        if !assessment.missing.is_empty() {
            let ranges: Vec<String> = assessment
                .missing
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            return Err(Error::unavailable(format!(
                "redis cluster: slots {} are not served by any reachable master; {}{}",
                ranges.join(", "),
                assessment.summary,
                caveats(&assessment.caveats)
            )));
        }
        crate::probe::write_read_delete_reading(self, |key| async move {
            self.get_from_master(&key).await
        })
        .await?;
        let server: String = self
            .command("INFO", redis::cmd("INFO").arg("server").clone(), any)
            .await?;
        let keys: u64 = self.query("DBSIZE", &redis::cmd("DBSIZE")).await?;
        let version = server
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(str::trim)
            .unwrap_or("?");
        let seed = self
            .config
            .nodes
            .first()
            .map(|n| redact_url(n.expose()))
            .unwrap_or_default();
        let detail = format!(
            "redis cluster {version} via {seed}: {}; 16384/16384 slots served; {keys} keys; \
             {}/{} pooled cluster connections open{}",
            assessment.summary,
            self.leased(),
            self.pool().status().max_size,
            caveats(&assessment.caveats)
        );
        Ok(if assessment.caveats.is_empty() {
            Probe::healthy(detail)
        } else {
            Probe::degraded(detail)
        })
    }
}

fn caveats(caveats: &[String]) -> String {
    if caveats.is_empty() {
        String::new()
    } else {
        format!("; {}", caveats.join("; "))
    }
}
