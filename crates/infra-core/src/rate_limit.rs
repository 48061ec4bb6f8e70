//! The `RateLimiter` trait.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::cache::CacheLimits;
use crate::error::{Error, Result};

/// The answer to one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimitDecision {
    /// Whether this call is admitted.
    pub allowed: bool,
    /// The limit that applied.
    pub limit: u64,
    /// Calls left in the current window after this one.
    pub remaining: u64,
    /// When the window resets (or, refused, when a retry can succeed).
    #[serde(rename = "reset_after_ms", serialize_with = "crate::serde_millis")]
    pub reset_after: Duration,
    /// `true` when the backend was unreachable and the configured fail-open/fail-closed
    /// policy decided instead of the counter.
    pub fallback: bool,
}

/// Admits at most `limit` calls per `window` for each key.
///
/// The algorithm (fixed window, sliding window, token bucket) is a property of the limiter,
/// not of the call. Backends: `infra-cache`'s Redis, Redis Cluster, Upstash and memory
/// limiters (`infra.cache().rate_limiter()` in the umbrella), or a `MockRateLimiter`.
///
/// ```
/// use std::time::Duration;
/// use infra_core::{RateLimiter, Result};
///
/// /// At most 10 agent calls a minute per client address.
/// async fn may_call_agent(limiter: &dyn RateLimiter, ip: &str) -> Result<bool> {
///     let decision = limiter.check(&format!("agent:{ip}"), 10, Duration::from_secs(60)).await?;
///     Ok(decision.allowed)
/// }
/// ```
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one call against `key` and says whether it is admitted.
    ///
    /// ```
    /// # async fn demo(limiter: &dyn infra_core::RateLimiter) -> infra_core::Result<()> {
    /// use std::time::Duration;
    /// let decision = limiter.check("login:ada@example.com", 5, Duration::from_secs(300)).await?;
    /// if !decision.allowed {
    ///     println!("retry in {:?}", decision.reset_after); // a 429's Retry-After
    /// }
    /// # Ok(()) }
    /// ```
    async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<RateLimitDecision>;
}

#[async_trait]
impl<T: RateLimiter + ?Sized> RateLimiter for Arc<T> {
    async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<RateLimitDecision> {
        (**self).check(key, limit, window).await
    }
}

#[async_trait]
impl<T: RateLimiter + ?Sized> RateLimiter for Box<T> {
    async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<RateLimitDecision> {
        (**self).check(key, limit, window).await
    }
}

/// Validates the arguments of [`RateLimiter::check`] the same way for every backend: a key
/// within the cache's key limit ([`CacheLimits::max_key_bytes`], default 1024 bytes), a limit
/// of at least 1, a window of at least 1 ms.
pub fn check_rate_limit_args(key: &str, limit: u64, window: Duration) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_input("key", "must not be empty"));
    }
    let max_key_bytes = CacheLimits::default().max_key_bytes;
    if key.len() > max_key_bytes {
        return Err(Error::invalid_input(
            "key",
            format_args!("is {} bytes; the limit is {max_key_bytes}", key.len()),
        ));
    }
    if limit == 0 {
        return Err(Error::invalid_input("limit", "must be at least 1"));
    }
    if window < Duration::from_millis(1) {
        return Err(Error::invalid_input("window", "must be at least 1ms"));
    }
    Ok(())
}
