//! The cache backend chosen from the environment.

use std::sync::Arc;

use infra_core::{Cache, Env, HealthCheck, RateLimiter, Result};

#[cfg(any(feature = "redis", feature = "memory"))]
use crate::config::CacheBackendConfig;
use crate::config::CacheConfig;
use crate::tags::TaggedCache;

/// The cache, the rate limiter and their health check, built from the environment.
#[derive(Clone)]
pub struct CacheService {
    cache: Arc<dyn Cache>,
    tagged: Arc<dyn TaggedCache>,
    rate_limiter: Arc<dyn RateLimiter>,
    health: Arc<dyn HealthCheck>,
    backend: &'static str,
}

impl CacheService {
    /// Redis when `REDIS_URL` (or an Upstash Redis URL) is set, otherwise in memory. Builds
    /// without connecting.
    pub fn from_env(env: &Env) -> Result<Self> {
        CacheService::from_config(CacheConfig::from_env(env)?)
    }

    /// Builds the backend `config` names.
    pub fn from_config(config: CacheConfig) -> Result<Self> {
        #[cfg(not(any(feature = "redis", feature = "memory")))]
        {
            let _ = config;
            Err(infra_core::Error::new(
                infra_core::ErrorKind::Config,
                "infra-cache was built with no backend feature enabled: enable `redis` and/or \
                 `memory`",
            ))
        }
        #[cfg(any(feature = "redis", feature = "memory"))]
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
                })
            }
            #[cfg(feature = "memory")]
            CacheBackendConfig::Memory(memory) => {
                let cache = Arc::new(crate::MemoryCache::with_algorithm(memory, config.algorithm));
                Ok(CacheService {
                    cache: cache.clone(),
                    tagged: cache.clone(),
                    rate_limiter: cache.clone(),
                    health: cache,
                    backend: "memory",
                })
            }
            #[cfg(not(feature = "redis"))]
            CacheBackendConfig::Redis(_) => Err(infra_core::Error::config(
                "REDIS_URL",
                "is set but infra-cache was built without its `redis` feature",
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

    /// `redis` or `memory`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}

#[cfg(test)]
mod tests {
    #[cfg(not(any(feature = "redis", feature = "memory")))]
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
}
