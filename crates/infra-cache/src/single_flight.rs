//! Cache-aside with single flight and optional early refresh (XFetch).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infra_core::{Cache, CacheExt, ErrorKind, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Probabilistic early refresh: a hit is recomputed early with a probability that rises as
/// the entry nears expiry and with how long the loader takes (Vattani et al., "Optimal
/// Probabilistic Cache Stampede Prevention"). `beta` 1.0 is the paper's default; larger
/// refreshes earlier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyRefresh {
    /// How eagerly to refresh; must be positive.
    pub beta: f64,
}

impl Default for EarlyRefresh {
    fn default() -> Self {
        EarlyRefresh { beta: 1.0 }
    }
}

/// Wraps a [`Cache`] so that N concurrent misses of one key in this process run the loader
/// once, and (optionally) hot keys are refreshed shortly before they expire instead of all
/// missing at once.
///
/// ```
/// # #[cfg(feature = "memory")] { // the example uses the memory backend
/// use std::sync::Arc;
/// use std::time::Duration;
/// use infra_cache::{MemoryCache, SingleFlight};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache = SingleFlight::new(Arc::new(MemoryCache::new(Default::default())));
/// let tz: String = cache
///     .get_or_set_with("prefs:42:tz", Duration::from_secs(300), || async { Ok("UTC".to_string()) })
///     .await
///     .unwrap();
/// assert_eq!(tz, "UTC");
/// # });
/// # }
/// ```
pub struct SingleFlight {
    cache: Arc<dyn Cache>,
    early_refresh: Option<EarlyRefresh>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// How long each key's loader last took: XFetch's `delta`.
    load_times: Mutex<HashMap<String, Duration>>,
}

impl SingleFlight {
    /// Single flight over `cache`, without early refresh.
    pub fn new(cache: Arc<dyn Cache>) -> Self {
        SingleFlight {
            cache,
            early_refresh: None,
            inflight: Mutex::new(HashMap::new()),
            load_times: Mutex::new(HashMap::new()),
        }
    }

    /// Turns on early refresh. Costs one extra round trip (the remaining TTL) per hit.
    pub fn with_early_refresh(mut self, early_refresh: EarlyRefresh) -> Self {
        self.early_refresh = Some(early_refresh);
        self
    }

    /// The wrapped cache.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    /// Returns the cached value of `key`, or runs `load` (once per process for concurrent
    /// callers), caches its result for `ttl` and returns it. A stored value that no longer
    /// decodes into `T` counts as a miss and is replaced.
    pub async fn get_or_set_with<T, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
    {
        let stale_remaining = match self.lookup::<T>(key).await? {
            Lookup::Fresh(value) => return Ok(value),
            Lookup::Miss => None,
            Lookup::Stale(remaining) => Some(remaining),
        };
        let lock = self.lock_for(key);
        let guard = lock.lock().await;
        // Whoever held the lock may have loaded (or refreshed) the value meanwhile.
        let again = match stale_remaining {
            None => self.read::<T>(key).await?.map(|v| (v, None)),
            Some(remaining) => self
                .read_with_ttl::<T>(key)
                .await?
                .filter(|(_, now_remaining)| now_remaining.is_some_and(|r| r > remaining)),
        };
        let outcome = match again {
            Some((value, _)) => Ok(value),
            None => self.load_and_store(key, ttl, load).await,
        };
        drop(guard);
        self.release(key, &lock);
        outcome
    }

    async fn load_and_store<T, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
    {
        let started = Instant::now();
        let value = load().await?;
        self.load_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), started.elapsed());
        self.cache.set_json(key, &value, ttl).await?;
        Ok(value)
    }

    async fn lookup<T: DeserializeOwned>(&self, key: &str) -> Result<Lookup<T>> {
        let Some(early) = self.early_refresh else {
            return Ok(match self.read::<T>(key).await? {
                Some(value) => Lookup::Fresh(value),
                None => Lookup::Miss,
            });
        };
        let Some((value, remaining)) = self.read_with_ttl::<T>(key).await? else {
            return Ok(Lookup::Miss);
        };
        let delta = self
            .load_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or_default();
        match remaining {
            Some(remaining) if should_refresh(delta, early.beta, remaining) => {
                Ok(Lookup::Stale(remaining))
            }
            _ => Ok(Lookup::Fresh(value)),
        }
    }

    async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.cache.get_json::<T>(key).await {
            Err(e) if e.kind() == ErrorKind::Decode => Ok(None),
            other => other,
        }
    }

    async fn read_with_ttl<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Option<Duration>)>> {
        let Some(value) = self.read::<T>(key).await? else {
            return Ok(None);
        };
        let remaining = self.cache.ttl(key).await?;
        Ok(Some((value, remaining)))
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets the key's lock once no caller holds or waits on it.
    fn release(&self, key: &str, lock: &Arc<tokio::sync::Mutex<()>>) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        // One reference in the map and the caller's own: nobody else wants it.
        if Arc::strong_count(lock) <= 2 {
            inflight.remove(key);
        }
    }
}

enum Lookup<T> {
    Miss,
    Fresh(T),
    /// A hit chosen for early refresh, with its remaining TTL.
    Stale(Duration),
}

/// XFetch: refresh when `delta * beta * -ln(rand) >= remaining`.
fn should_refresh(delta: Duration, beta: f64, remaining: Duration) -> bool {
    if delta.is_zero() {
        return false;
    }
    let draw: f64 = rand::random::<f64>().max(f64::MIN_POSITIVE);
    delta.as_secs_f64() * beta * -draw.ln() >= remaining.as_secs_f64()
}
