//! The TypeScript module's names, for code ported from it and for people searching the docs
//! by them.
//!
//! Each function here is a documented alias of the one method that does the same, and this
//! module is the only place the TypeScript names live: the traits carry one name per
//! operation, so a mock in a test expects the method the code really calls. The rest of the
//! TypeScript module — `prisma`, `Channels`, `Events`, `captureException`, `addBreadcrumb`,
//! `setUserContext`, `ErrorTracking`, the API routes and the environment variables — maps to
//! the one Rust name each in the repository's `docs/from-typescript.md`.
//!
//! | TypeScript | alias | the method |
//! |---|---|---|
//! | `getCached(key)` | [`get_cached`] | [`CacheExt::get_json`] |
//! | `setCached(key, value, ttl)` | [`set_cached`] | [`CacheExt::set_json`] |
//! | `checkRateLimit(key, limit, window)` | [`check_rate_limit`] | [`RateLimiter::check`] |
//! | `sendEvent(name, data)` | [`send_event`] | [`EventSender::send`] of an [`Event::new`] |
//! | `triggerEvent(channel, event, data)` | [`trigger_event`] | [`Realtime::trigger`] on one checked [`ChannelName`] and [`EventName`] |
//! | `testAllConnections()` | [`test_all_connections`] | [`Infra::check`] |
//! | `testDatabaseConnection()` | `test_database_connection` (feature `db`) | the `Database`'s [`check`](crate::HealthCheck::check) |
//!
//! ```
//! # #[cfg(feature = "cache")] {
//! use std::time::Duration;
//! use infra::compat::{check_rate_limit, get_cached, set_cached};
//! use infra::{Env, Infra};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let infra = Infra::from_env(&Env::empty()).unwrap(); // the in-memory cache
//! set_cached(infra.cache(), "prefs:1", &serde_json::json!({ "tz": "UTC" }), Duration::from_secs(300)).await.unwrap();
//! let prefs: Option<serde_json::Value> = get_cached(infra.cache(), "prefs:1").await.unwrap();
//! assert_eq!(prefs.unwrap()["tz"], "UTC");
//! let limiter = infra.cache().rate_limiter();
//! let decision = check_rate_limit(limiter.as_ref(), "ip:203.0.113.9", 10, Duration::from_secs(60)).await.unwrap();
//! assert!(decision.allowed);
//! # });
//! # }
//! ```

use std::time::Duration;

use infra_core::{
    Cache, CacheExt, ChannelName, Event, EventName, EventSender, RateLimitDecision, RateLimiter,
    Realtime, Result,
};
#[cfg(feature = "db")]
use infra_core::{HealthCheck, HealthReport};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ConnectionReport, Infra};

/// `getCached(key)`: [`CacheExt::get_json`] — the value under `key` decoded from JSON, `None`
/// when absent or expired.
#[doc(alias = "getCached")]
pub async fn get_cached<T: DeserializeOwned>(
    cache: &(impl Cache + ?Sized),
    key: &str,
) -> Result<Option<T>> {
    cache.get_json(key).await
}

/// `setCached(key, value, ttl)`: [`CacheExt::set_json`] — `value` as JSON under `key` for
/// `ttl`.
#[doc(alias = "setCached")]
pub async fn set_cached<T: Serialize + Sync + ?Sized>(
    cache: &(impl Cache + ?Sized),
    key: &str,
    value: &T,
    ttl: Duration,
) -> Result<()> {
    cache.set_json(key, value, ttl).await
}

/// `checkRateLimit(key, limit, window)`: [`RateLimiter::check`] — counts one call against
/// `key` and says whether it is admitted (`allowed`, `remaining`, …).
#[doc(alias = "checkRateLimit")]
pub async fn check_rate_limit(
    limiter: &(impl RateLimiter + ?Sized),
    key: &str,
    limit: u64,
    window: Duration,
) -> Result<RateLimitDecision> {
    limiter.check(key, limit, window).await
}

/// `sendEvent(name, data)`: [`EventSender::send`] of `Event::new(name, data)`; returns the
/// event's id. A typed payload is sent as `events.send(payload.to_event()?)`.
#[doc(alias = "sendEvent")]
pub async fn send_event(
    events: &(impl EventSender + ?Sized),
    name: &str,
    data: serde_json::Value,
) -> Result<String> {
    events.send(Event::new(name, data)).await
}

/// `triggerEvent(channel, event, data)`: [`Realtime::trigger`] on one channel, the names given
/// as strings and checked ([`ChannelName::new`], [`EventName::new`]: an invalid one is an
/// `InvalidInput` error naming it, and nothing is sent).
#[doc(alias = "triggerEvent")]
pub async fn trigger_event(
    realtime: &(impl Realtime + ?Sized),
    channel: &str,
    event: &str,
    data: &serde_json::Value,
) -> Result<()> {
    let channel = ChannelName::new(channel)?;
    let event = EventName::new(event)?;
    realtime.trigger(&[channel], &event, data).await
}

/// `testAllConnections()`: [`Infra::check`] — every service checked end to end, within the
/// health deadline.
#[doc(alias = "testAllConnections")]
pub async fn test_all_connections(infra: &Infra) -> ConnectionReport {
    infra.check().await
}

/// `testDatabaseConnection()`: the [`HealthCheck::check`] of the
/// [`Database`](infra_db::Database) — a `SELECT 1` round trip and the server's version,
/// within the deadline.
#[cfg(feature = "db")]
#[cfg_attr(docsrs, doc(cfg(feature = "db")))]
#[doc(alias = "testDatabaseConnection")]
pub async fn test_database_connection(db: &infra_db::Database) -> HealthReport {
    db.check().await
}
