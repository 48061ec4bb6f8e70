//! The conformance suites run against a trivial in-test backend, which proves the suites
//! themselves are satisfiable and documents the contract in the smallest code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use infra_core::{
    Cache, CacheLimits, RateLimitDecision, RateLimiter, Result, check_rate_limit_args, testkit,
};

#[derive(Default)]
struct MapCache {
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    limits: CacheLimits,
}

impl MapCache {
    fn live(&self, key: &str) -> Option<(Vec<u8>, Instant)> {
        let mut map = self.entries.lock().unwrap();
        match map.get(key) {
            Some((_, expires)) if *expires <= Instant::now() => {
                map.remove(key);
                None
            }
            other => other.cloned(),
        }
    }
}

#[async_trait]
impl Cache for MapCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.limits.check_key(key)?;
        Ok(self.live(key).map(|(v, _)| v))
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.set_many(vec![(key.to_owned(), value.to_vec())], ttl)
            .await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.limits.check_key(key)?;
        let existed = self.live(key).is_some();
        self.entries.lock().unwrap().remove(key);
        Ok(existed)
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.limits.check_key(key)?;
        Ok(self.live(key).is_some())
    }
    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        self.limits.check_key(key)?;
        Ok(self
            .live(key)
            .map(|(_, e)| e.saturating_duration_since(Instant::now())))
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        for key in keys {
            self.limits.check_key(key)?;
        }
        Ok(keys.iter().map(|k| self.live(k).map(|(v, _)| v)).collect())
    }
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration) -> Result<()> {
        self.limits.check_ttl(ttl)?;
        for (key, value) in &entries {
            self.limits.check_key(key)?;
            self.limits.check_value(key, value)?;
        }
        let expires = Instant::now() + ttl;
        let mut map = self.entries.lock().unwrap();
        for (key, value) in entries {
            map.insert(key, (value, expires));
        }
        Ok(())
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.limits.check_prefix(prefix)?;
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap();
        let before = map.len();
        let mut expired = 0;
        map.retain(|k, (_, e)| {
            let under = k.starts_with(prefix);
            if under && *e <= now {
                expired += 1;
            }
            !under
        });
        Ok((before - map.len() - expired) as u64)
    }
}

/// A fixed-window counter.
#[derive(Default)]
struct MapLimiter {
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

#[async_trait]
impl RateLimiter for MapLimiter {
    async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<RateLimitDecision> {
        check_rate_limit_args(key, limit, window)?;
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap();
        let slot = map.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(slot.0) >= window {
            *slot = (now, 0);
        }
        let allowed = slot.1 < limit;
        if allowed {
            slot.1 += 1;
        }
        Ok(RateLimitDecision {
            allowed,
            limit,
            remaining: limit - slot.1,
            reset_after: window.saturating_sub(now.duration_since(slot.0)),
            fallback: false,
        })
    }
}

#[tokio::test]
async fn cache_suite_passes_on_reference_backend() {
    testkit::cache::run_all(Arc::new(MapCache::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_suite_passes_on_reference_backend() {
    testkit::rate_limit::run_all(Arc::new(MapLimiter::default())).await;
}
