//! `TaggedCache` on Redis Cluster.
//!
//! A key and its tag sets live in different slots, so the single-server script that writes the
//! key and adds it to every set at once cannot run here. A tagged write instead adds the key to
//! each tag set (one small script per set, all at once), writes the key, then adds it to each
//! set again:
//!
//! - added before the write, a key is never stored untagged, even if the caller dies half way
//!   (a set member whose key was never written costs nothing: its `UNLINK` finds nothing);
//! - added again after the write, a key written while `invalidate_tag` runs lands in the
//!   fresh set when the first add went to the set being invalidated, so a later invalidation
//!   still finds it — what the atomic script guarantees on one server.
//!
//! `invalidate_tag` renames the set (the two names share a hash tag, hence a slot) and
//! `UNLINK`s its members page by page, the client splitting each page by slot.

use std::time::Duration;

use async_trait::async_trait;
use infra_core::Result;
use redis::cluster_routing::{Route, SlotAddr};

use super::cache::RedisClusterCache;
use super::key_slot::{key_slot, tag_set_key};
use crate::key_space::SCAN_COUNT;
use crate::tags::{TaggedCache, check_tag};

impl RedisClusterCache {
    /// Adds `member` to every tag set in `sets`, extending each set's expiry to `ttl_ms`.
    async fn tag_all(&self, sets: &[String], member: &str, ttl_ms: u64) -> Result<()> {
        let adds = sets.iter().map(|set| {
            let route = Route::new(key_slot("", set), SlotAddr::Master);
            let bytes = set.len() + member.len() + 24;
            self.eval::<i64>(
                "EVALSHA tag_member",
                &self.tag_member,
                route,
                (5, bytes),
                move |cmd| {
                    cmd.arg(1).arg(set).arg(member).arg(ttl_ms);
                },
            )
        });
        for outcome in futures::future::join_all(adds).await {
            outcome?;
        }
        Ok(())
    }
}

#[async_trait]
impl TaggedCache for RedisClusterCache {
    async fn set_tagged(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tags: &[&str],
    ) -> Result<()> {
        let full = self.checked_key(key)?;
        self.limits.check_value(key, value)?;
        self.limits.check_ttl(ttl)?;
        let sets: Vec<String> = tags
            .iter()
            .map(|tag| check_tag(tag).map(|()| tag_set_key(&self.config.key_prefix, tag)))
            .collect::<Result<_>>()?;
        let ttl_ms = ttl.as_millis() as u64;
        self.tag_all(&sets, &full, ttl_ms).await?;
        let mut set = redis::Cmd::with_capacity(5, full.len() + value.len() + 26);
        set.arg("SET").arg(&full).arg(value).arg("PX").arg(ttl_ms);
        let route = Route::new(key_slot("", &full), SlotAddr::Master);
        self.command::<()>("SET", set, route).await?;
        self.tag_all(&sets, &full, ttl_ms).await
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        check_tag(tag)?;
        let set = tag_set_key(&self.config.key_prefix, tag);
        let taken = format!("{set}:invalidating:{:016x}", rand::random::<u64>());
        let route = Route::new(key_slot("", &set), SlotAddr::Master);
        let existed: i64 = self
            .eval(
                "EVALSHA take_tag",
                &self.take_tag,
                route,
                (4, set.len() + taken.len()),
                |cmd| {
                    cmd.arg(2).arg(&set).arg(&taken);
                },
            )
            .await?;
        if existed == 0 {
            return Ok(0);
        }
        // SSCAN pages through the set, so a tag on a million keys never blocks a node.
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let mut scan = redis::cmd("SSCAN");
            scan.arg(&taken).arg(cursor).arg("COUNT").arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<Vec<u8>>) = self.command("SSCAN", scan, route).await?;
            removed += self.unlink(&keys).await?;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.unlink(&[&taken]).await?;
        Ok(removed)
    }
}
