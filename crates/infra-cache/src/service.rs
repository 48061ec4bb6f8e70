//! The cache backend chosen from the environment.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infra_core::{Cache, Env, HealthCheck, RateLimiter, Result};

#[cfg(any(feature = "redis", feature = "memory", feature = "upstash"))]
use crate::config::CacheBackendConfig;
use crate::config::CacheConfig;
use crate::tags::TaggedCache;

/// The cache service: the cache, the rate limiter and their health check, on the backend the
/// environment selects. Cheap to clone.
///
/// It is a [`Cache`] (and a [`TaggedCache`]) itself, so `service.get_json(…)` works through
/// [`CacheExt`](infra_core::CacheExt); the trait objects — for code that holds an
/// `Arc<dyn Cache>` or takes a mock in its tests — come from [`cache`](Self::cache),
/// [`tagged`](Self::tagged), [`rate_limiter`](Self::rate_limiter) and
/// [`health`](Self::health).
///
/// ```
/// # #[cfg(feature = "memory")] { // the in-memory default is a feature
/// use std::time::Duration;
/// use infra_cache::CacheService;
/// use infra_core::{CacheExt, Env, RateLimiter};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache = CacheService::from_env(&Env::empty()).unwrap(); // memory: no REDIS_URL
/// assert_eq!(cache.backend(), "memory");
/// cache.set_json("user:42:prefs", &serde_json::json!({"tz": "UTC"}), Duration::from_secs(3600)).await.unwrap();
/// let prefs: Option<serde_json::Value> = cache.get_json("user:42:prefs").await.unwrap();
/// assert_eq!(prefs.unwrap()["tz"], "UTC");
/// let decision = cache.rate_limiter().check("ip:203.0.113.9", 10, Duration::from_secs(60)).await.unwrap();
/// assert_eq!(decision.remaining, 9);
/// # });
/// # }
/// ```
#[derive(Clone)]
pub struct CacheService {
    cache: Arc<dyn Cache>,
    tagged: Arc<dyn TaggedCache>,
    rate_limiter: Arc<dyn RateLimiter>,
    health: Arc<dyn HealthCheck>,
    backend: &'static str,
    #[cfg(feature = "memory")]
    memory: Option<Arc<crate::MemoryCache>>,
}

impl CacheService {
    /// Redis Cluster when `REDIS_CLUSTER_NODES` is set, else Redis when `REDIS_URL` (or
    /// `UPSTASH_REDIS_REST_URL` holding a `redis://`/`rediss://` URL) is set, Upstash's REST API
    /// when `UPSTASH_REDIS_REST_URL` is its `https://` endpoint, otherwise in memory (see
    /// [`CacheConfig::from_env`]). Builds without connecting.
    pub fn from_env(env: &Env) -> Result<Self> {
        CacheService::from_config(CacheConfig::from_env(env)?)
    }

    /// Builds the backend `config` names.
    pub fn from_config(config: CacheConfig) -> Result<Self> {
        #[cfg(not(any(feature = "redis", feature = "memory", feature = "upstash")))]
        {
            let _ = config;
            Err(infra_core::Error::new(
                infra_core::ErrorKind::Config,
                "infra-cache was built with no backend feature enabled: enable `redis`, \
                 `upstash` and/or `memory`",
            ))
        }
        #[cfg(any(feature = "redis", feature = "memory", feature = "upstash"))]
        match config.backend {
            #[cfg(feature = "redis")]
            CacheBackendConfig::Redis(redis) => {
                let cache = Arc::new(crate::RedisCache::new(redis, config.algorithm)?);
                Ok(CacheService {
                    cache: cache.clone(),
                    tagged: cache.clone(),
                    rate_limiter: cache.clone(),
                    health: cache,
                    backend: "redis",
                    #[cfg(feature = "memory")]
                    memory: None,
                })
            }
            #[cfg(feature = "redis-cluster")]
            CacheBackendConfig::RedisCluster(cluster) => {
                let cache = Arc::new(crate::RedisClusterCache::new(cluster, config.algorithm)?);
                Ok(CacheService {
                    cache: cache.clone(),
                    tagged: cache.clone(),
                    rate_limiter: cache.clone(),
                    health: cache,
                    backend: "redis-cluster",
                    #[cfg(feature = "memory")]
                    memory: None,
                })
            }
            #[cfg(feature = "upstash")]
            CacheBackendConfig::Upstash(upstash) => {
                let cache = Arc::new(crate::UpstashRestCache::new(upstash, config.algorithm)?);
                Ok(CacheService {
                    cache: cache.clone(),
                    tagged: cache.clone(),
                    rate_limiter: cache.clone(),
                    health: cache,
                    backend: "upstash",
                    #[cfg(feature = "memory")]
                    memory: None,
                })
            }
            #[cfg(feature = "memory")]
            CacheBackendConfig::Memory(memory) => {
                let cache = Arc::new(crate::MemoryCache::with_algorithm(memory, config.algorithm));
                Ok(CacheService {
                    cache: cache.clone(),
                    tagged: cache.clone(),
                    rate_limiter: cache.clone(),
                    health: cache.clone(),
                    backend: "memory",
                    memory: Some(cache),
                })
            }
            #[cfg(not(feature = "redis"))]
            CacheBackendConfig::Redis(redis) => Err(infra_core::Error::config(
                redis.url_variable,
                "holds a Redis URL but infra-cache was built without its `redis` feature",
            )),
            #[cfg(not(feature = "redis-cluster"))]
            CacheBackendConfig::RedisCluster(cluster) => Err(infra_core::Error::config(
                cluster.nodes_variable,
                "lists Redis Cluster nodes but infra-cache was built without its \
                 `redis-cluster` feature",
            )),
            #[cfg(not(feature = "upstash"))]
            CacheBackendConfig::Upstash(upstash) => Err(infra_core::Error::config(
                upstash.url_variable,
                "holds Upstash's REST endpoint but infra-cache was built without its `upstash` \
                 feature",
            )),
            #[cfg(not(feature = "memory"))]
            CacheBackendConfig::Memory(_) => Err(infra_core::Error::config(
                "REDIS_URL",
                "is not set and infra-cache was built without its `memory` feature (the \
                 in-memory default)",
            )),
        }
    }

    /// The cache with tag-based invalidation (the same store as [`cache`](Self::cache)).
    pub fn tagged(&self) -> Arc<dyn TaggedCache> {
        self.tagged.clone()
    }

    /// The cache.
    pub fn cache(&self) -> Arc<dyn Cache> {
        self.cache.clone()
    }

    /// The rate limiter.
    pub fn rate_limiter(&self) -> Arc<dyn RateLimiter> {
        self.rate_limiter.clone()
    }

    /// The health check.
    pub fn health(&self) -> Arc<dyn HealthCheck> {
        self.health.clone()
    }

    /// Refreshes the cache's periodic gauges (the memory cache's `infra_cache_memory_bytes`
    /// and `_entries`; nothing on a networked backend): what the metrics interval calls.
    pub fn record_metrics(&self) {
        #[cfg(feature = "memory")]
        if let Some(memory) = &self.memory {
            memory.record_metrics();
        }
    }

    /// `redis`, `redis-cluster`, `upstash` or `memory`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}

/// The future every [`Cache`] method returns (what `#[async_trait]` generates).
type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

// Written out rather than with `#[async_trait]`: each call hands back the backend's own
// future, so going through the service costs no allocation of its own.
impl Cache for CacheService {
    fn get<'s, 'k, 'f>(&'s self, key: &'k str) -> CacheFuture<'f, Option<Vec<u8>>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.cache.get(key)
    }

    fn set<'s, 'k, 'v, 'f>(
        &'s self,
        key: &'k str,
        value: &'v [u8],
        ttl: Duration,
    ) -> CacheFuture<'f, ()>
    where
        's: 'f,
        'k: 'f,
        'v: 'f,
        Self: 'f,
    {
        self.cache.set(key, value, ttl)
    }

    fn delete<'s, 'k, 'f>(&'s self, key: &'k str) -> CacheFuture<'f, bool>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.cache.delete(key)
    }

    fn exists<'s, 'k, 'f>(&'s self, key: &'k str) -> CacheFuture<'f, bool>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.cache.exists(key)
    }

    fn ttl<'s, 'k, 'f>(&'s self, key: &'k str) -> CacheFuture<'f, Option<Duration>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.cache.ttl(key)
    }

    fn get_many<'s, 'k, 'f>(&'s self, keys: &'k [String]) -> CacheFuture<'f, Vec<Option<Vec<u8>>>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.cache.get_many(keys)
    }

    fn set_many<'s, 'f>(
        &'s self,
        entries: Vec<(String, Vec<u8>)>,
        ttl: Duration,
    ) -> CacheFuture<'f, ()>
    where
        's: 'f,
        Self: 'f,
    {
        self.cache.set_many(entries, ttl)
    }

    fn delete_prefix<'s, 'k, 'f>(&'s self, prefix: &'k str) -> CacheFuture<'f, u64>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.cache.delete_prefix(prefix)
    }
}

#[async_trait]
impl TaggedCache for CacheService {
    async fn set_tagged(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tags: &[&str],
    ) -> Result<()> {
        self.tagged.set_tagged(key, value, ttl, tags).await
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        self.tagged.invalidate_tag(tag).await
    }
}

#[cfg(test)]
mod tests {
    #[cfg(not(any(feature = "redis", feature = "memory", feature = "upstash")))]
    #[test]
    fn without_a_backend_feature_from_env_says_so() {
        let err = match super::CacheService::from_env(&infra_core::Env::empty()) {
            Ok(_) => panic!("no backend is compiled in"),
            Err(err) => err,
        };
        assert_eq!(err.kind(), infra_core::ErrorKind::Config);
        assert!(err.to_string().contains("no backend feature"), "{err}");
    }

    #[cfg(all(feature = "memory", not(feature = "redis")))]
    #[test]
    fn redis_url_without_the_redis_feature_names_the_variable() {
        let env = infra_core::Env::from_pairs([("REDIS_URL", "redis://127.0.0.1")]);
        let err = match super::CacheService::from_env(&env) {
            Ok(_) => panic!("redis is not compiled in"),
            Err(err) => err,
        };
        assert_eq!(err.variable(), Some("REDIS_URL"));
    }

    #[cfg(all(feature = "memory", not(feature = "upstash")))]
    #[test]
    fn upstash_url_without_the_upstash_feature_names_the_variable() {
        let env = infra_core::Env::from_pairs([
            ("UPSTASH_REDIS_REST_URL", "https://eu1-fond-cat.upstash.io"),
            ("UPSTASH_REDIS_REST_TOKEN", "t"),
        ]);
        let err = match super::CacheService::from_env(&env) {
            Ok(_) => panic!("upstash is not compiled in"),
            Err(err) => err,
        };
        assert_eq!(err.variable(), Some("UPSTASH_REDIS_REST_URL"));
    }
}
