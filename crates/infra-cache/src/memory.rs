//! `MemoryCache`: moka, bounded by bytes, with a TTL per entry. The embedded default.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use infra_core::{Cache, CacheLimits, HealthCheck, Probe, RateLimitDecision, RateLimiter, Result};
use moka::Expiry;
// The sync flavour: every operation here completes without waiting, so an async wrapper
// around moka's future cache would only add a future per call.
use moka::sync::Cache as Moka;

use crate::cache_metrics::{CacheMetrics, MemorySizeMetrics};
use crate::config::{MemoryConfig, RateLimitAlgorithm};
use crate::memory_limiter::MemoryLimiter;
use crate::tags::{TaggedCache, check_tag};

/// Prune expired keys from a tag set when it reaches this size (and then each time it doubles),
/// so tags on short-lived keys don't grow without bound.
const TAG_PRUNE_AT: usize = 1024;

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    expires_at: Instant,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at > now
    }
}

/// Each entry expires at its own deadline, set by the write.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _: &String,
        entry: &Entry,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(created_at))
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        updated_at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(updated_at))
    }
}

/// An in-process cache and rate limiter.
///
/// Bounded by the total bytes of keys and values (least recently used entries go first);
/// every entry has its own TTL. Rate limiting is exact within the process.
///
/// ```
/// use std::time::Duration;
/// use infra_cache::MemoryCache;
/// use infra_core::{Cache, CacheExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache = MemoryCache::new(Default::default());
/// cache.set_json("prefs:1", &"UTC", Duration::from_secs(60)).await.unwrap();
/// assert_eq!(cache.get_json::<String>("prefs:1").await.unwrap().as_deref(), Some("UTC"));
/// # });
/// ```
pub struct MemoryCache {
    entries: Moka<String, Entry>,
    config: MemoryConfig,
    limits: CacheLimits,
    limiter: MemoryLimiter,
    /// Tag -> keys written with it (and the size at which to prune it next).
    tags: Mutex<HashMap<String, (HashSet<String>, usize)>>,
    metrics: CacheMetrics,
    size_metrics: MemorySizeMetrics,
}

impl MemoryCache {
    /// A cache bounded by `config.max_bytes`, limiting with the sliding window.
    pub fn new(config: MemoryConfig) -> Self {
        MemoryCache::with_algorithm(config, RateLimitAlgorithm::default())
    }

    /// A cache whose rate limiter uses `algorithm`.
    pub fn with_algorithm(config: MemoryConfig, algorithm: RateLimitAlgorithm) -> Self {
        let entries = Moka::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len() + entry.value.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        MemoryCache {
            entries,
            config,
            limits: CacheLimits::default(),
            limiter: MemoryLimiter::new(algorithm),
            tags: Mutex::new(HashMap::new()),
            metrics: CacheMetrics::new("memory"),
            size_metrics: MemorySizeMetrics::new(),
        }
    }

    /// Replaces the input limits.
    pub fn with_limits(mut self, limits: CacheLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Entries and weighted bytes, after applying pending evictions.
    pub async fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    /// The value under `key`, or `None` when absent or expired: [`Cache::get`] without the
    /// boxed future of the object-safe trait. Code holding a concrete `MemoryCache` calls this
    /// one (`cache.get(key).await`); through `dyn Cache` the trait forwards here.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.limits.check_key(key)?;
        let value = Ok(self.live(key).map(|e| e.value.to_vec()));
        self.metrics.read(&value);
        value
    }

    /// Sets `infra_cache_memory_entries` and `infra_cache_memory_bytes`, after applying
    /// pending evictions (what the metrics interval calls).
    pub fn record_metrics(&self) {
        self.entries.run_pending_tasks();
        self.size_metrics
            .set(self.entries.entry_count(), self.entries.weighted_size());
    }

    /// moka itself refuses to return an entry past its per-entry expiry, so a read needs no
    /// clock of its own.
    fn live(&self, key: &str) -> Option<Entry> {
        self.entries.get(key)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        MemoryCache::get(self, key).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.limits.check_key(key)?;
        self.limits.check_value(key, value)?;
        self.limits.check_ttl(ttl)?;
        let entry = Entry {
            value: Arc::from(value),
            expires_at: Instant::now() + ttl,
        };
        self.entries.insert(key.to_owned(), entry);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.limits.check_key(key)?;
        let removed = self.entries.remove(key);
        Ok(removed.is_some_and(|e| e.is_live(Instant::now())))
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.limits.check_key(key)?;
        Ok(self.live(key).is_some())
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        self.limits.check_key(key)?;
        let now = Instant::now();
        Ok(self
            .live(key)
            .map(|e| e.expires_at.saturating_duration_since(now)))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        for key in keys {
            self.limits.check_key(key)?;
        }
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.live(key).map(|e| e.value.to_vec()));
        }
        let values = Ok(values);
        self.metrics.read_many(&values);
        values
    }

    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration) -> Result<()> {
        self.limits.check_ttl(ttl)?;
        for (key, value) in &entries {
            self.limits.check_key(key)?;
            self.limits.check_value(key, value)?;
        }
        let expires_at = Instant::now() + ttl;
        for (key, value) in entries {
            let entry = Entry {
                value: Arc::from(value),
                expires_at,
            };
            self.entries.insert(key, entry);
        }
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.limits.check_prefix(prefix)?;
        let now = Instant::now();
        let matching: Vec<(Arc<String>, bool)> = self
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k, e.is_live(now)))
            .collect();
        let mut removed = 0;
        for (key, live) in matching {
            self.entries.invalidate(key.as_str());
            if live {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl TaggedCache for MemoryCache {
    async fn set_tagged(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tags: &[&str],
    ) -> Result<()> {
        for tag in tags {
            check_tag(tag)?;
        }
        self.set(key, value, ttl).await?;
        let mut sets = self.tags.lock().unwrap_or_else(|e| e.into_inner());
        for tag in tags {
            let (keys, prune_at) = sets
                .entry((*tag).to_owned())
                .or_insert_with(|| (HashSet::new(), TAG_PRUNE_AT));
            keys.insert(key.to_owned());
            if keys.len() >= *prune_at {
                keys.retain(|k| self.entries.contains_key(k.as_str()));
                *prune_at = (keys.len() * 2).max(TAG_PRUNE_AT);
            }
        }
        Ok(())
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        check_tag(tag)?;
        let keys = self
            .tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tag)
            .map(|(keys, _)| keys)
            .unwrap_or_default();
        let now = Instant::now();
        let mut removed = 0;
        for key in keys {
            if self.entries.remove(&key).is_some_and(|e| e.is_live(now)) {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl RateLimiter for MemoryCache {
    async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<RateLimitDecision> {
        let decision = self.limiter.check(key, limit, window);
        self.metrics.decided(&decision);
        decision
    }
}

#[async_trait]
impl HealthCheck for MemoryCache {
    fn service(&self) -> &str {
        "cache"
    }

    fn backend(&self) -> &str {
        "memory"
    }

    async fn probe(&self) -> Result<Probe> {
        crate::probe::write_read_delete(self).await?;
        let (entries, bytes) = self.usage().await;
        Ok(Probe::healthy(format!(
            "{entries} keys, {bytes} of {} bytes used",
            self.config.max_bytes
        )))
    }
}
