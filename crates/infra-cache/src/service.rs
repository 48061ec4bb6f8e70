//! The cache backend chosen from the environment.

use std::sync::Arc;

use infra_core::{Cache, Env, HealthCheck, RateLimiter, Result};

#[cfg(any(feature = "redis", feature = "memory"))]
use crate::config::CacheBackendConfig;
use crate::config::CacheConfig;

/// The cache, the rate limiter and their health check, built from the environment.
#[derive(Clone)]
pub struct CacheService {
    cache: Arc<dyn Cache>,
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
        match config.backend {
            #[cfg(feature = "redis")]
            CacheBackendConfig::Redis(redis) => {
                let cache = Arc::new(crate::RedisCache::new(redis, config.algorithm)?);
                Ok(CacheService {
                    cache: cache.clone(),
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
                    rate_limiter: cache.clone(),
                    health: cache,
                    backend: "memory",
                })
            }
            #[allow(unreachable_patterns)] // reachable only with a backend feature turned off
            _ => Err(infra_core::Error::config(
                "REDIS_URL",
                "selects a backend that infra-cache was built without (enable its `redis` or `memory` feature)",
            )),
        }
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
