//! Skeleton: filled in by the infra-cache issue.

use std::sync::Arc;

use infra_core::{Cache, Env, Error, HealthCheck, RateLimiter, Result};

/// The cache, the rate limiter and their health check, built from the environment.
#[derive(Clone)]
pub struct CacheService {
    cache: Arc<dyn Cache>,
    rate_limiter: Arc<dyn RateLimiter>,
    health: Arc<dyn HealthCheck>,
}

impl CacheService {
    /// Redis when `REDIS_URL` is set, otherwise in memory.
    pub fn from_env(_env: &Env) -> Result<Self> {
        Err(Error::backend("infra-cache is not built yet"))
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
}
