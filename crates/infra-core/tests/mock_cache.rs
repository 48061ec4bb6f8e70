//! A user's test mocking `Cache` for code that depends on it.

use std::time::Duration;

use infra_core::mock::{MockCache, MockRateLimiter};
use infra_core::{Cache, CacheExt, Error, RateLimitDecision, RateLimiter, Result};
use mockall::predicate::eq;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Preferences {
    timezone: String,
}

/// The code under test: cache-aside for user preferences.
async fn user_preferences(cache: &dyn Cache, user_id: u64) -> Result<Preferences> {
    cache
        .get_or_set_json(
            &format!("prefs:{user_id}"),
            Duration::from_secs(3600),
            || async {
                Ok(Preferences {
                    timezone: "Europe/Berlin".into(),
                })
            },
        )
        .await
}

#[tokio::test]
async fn miss_loads_and_stores_with_ttl() {
    let mut cache = MockCache::new();
    cache
        .expect_get()
        .with(eq("prefs:42"))
        .times(1)
        .returning(|_| Ok(None));
    cache
        .expect_set()
        .withf(|key, value, ttl| {
            key == "prefs:42"
                && value == br#"{"timezone":"Europe/Berlin"}"#
                && *ttl == Duration::from_secs(3600)
        })
        .times(1)
        .returning(|_, _, _| Ok(()));

    let prefs = user_preferences(&cache, 42).await.unwrap();
    assert_eq!(prefs.timezone, "Europe/Berlin");
}

#[tokio::test]
async fn hit_skips_the_loader_and_the_write() {
    let mut cache = MockCache::new();
    cache
        .expect_get()
        .returning(|_| Ok(Some(br#"{"timezone":"Asia/Tokyo"}"#.to_vec())));
    cache.expect_set().never();
    let prefs = user_preferences(&cache, 7).await.unwrap();
    assert_eq!(prefs.timezone, "Asia/Tokyo");
}

#[tokio::test]
async fn backend_errors_reach_the_caller() {
    let mut cache = MockCache::new();
    cache
        .expect_get()
        .returning(|_| Err(Error::unavailable("redis down")));
    let err = user_preferences(&cache, 1).await.unwrap_err();
    assert!(err.is_retryable());
}

#[tokio::test]
async fn rate_limiter_mock() {
    let mut limiter = MockRateLimiter::new();
    limiter.expect_check().returning(|_, limit, window| {
        Ok(RateLimitDecision {
            allowed: false,
            limit,
            remaining: 0,
            reset_after: window,
            fallback: false,
        })
    });
    let d = limiter
        .check("ip:1", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.reset_after, Duration::from_secs(60));
}
