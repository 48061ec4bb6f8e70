//! The `Cache` trait: bytes with TTLs, and typed JSON on top.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// A key-value cache of bytes with per-entry TTLs.
///
/// Keys are non-empty UTF-8 strings; every write takes a TTL (the TypeScript module's advice:
/// always set one). Backends validate keys, values and TTLs with [`CacheLimits`] and return
/// [`ErrorKind::InvalidInput`] naming the field.
///
/// The typed layer, [`CacheExt`], is implemented for every `Cache`, `dyn Cache` included.
///
/// Code takes any backend — `RedisCache`, `RedisClusterCache`, `UpstashRestCache`,
/// `MemoryCache` (all in `infra-cache`), `infra.cache()` in the umbrella, or a `MockCache` in
/// a test:
///
/// ```
/// use std::time::Duration;
/// use infra_core::{Cache, Result};
///
/// /// Remembers that `user_id` signed in, for an hour; `true` if it was already known.
/// async fn remember_sign_in(cache: &dyn Cache, user_id: &str) -> Result<bool> {
///     let key = format!("signed-in:{user_id}");
///     let known = cache.exists(&key).await?;
///     cache.set(&key, b"1", Duration::from_secs(3600)).await?;
///     Ok(known)
/// }
/// ```
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value under `key`, or `None` when absent or expired.
    ///
    /// ```
    /// # async fn demo(cache: &dyn infra_core::Cache) -> infra_core::Result<()> {
    /// match cache.get("session:4f2a").await? {
    ///     Some(bytes) => println!("{} bytes cached", bytes.len()),
    ///     None => println!("a miss: load it, then `set` it"),
    /// }
    /// # Ok(()) }
    /// ```
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key` for `ttl`, replacing what was there.
    ///
    /// ```
    /// # async fn demo(cache: &dyn infra_core::Cache) -> infra_core::Result<()> {
    /// use std::time::Duration;
    /// cache.set("session:4f2a", b"opaque", Duration::from_secs(900)).await?;
    /// // A zero TTL would store nothing: it is refused, naming the field.
    /// let err = cache.set("session:4f2a", b"opaque", Duration::ZERO).await.unwrap_err();
    /// assert_eq!(err.field(), Some("ttl"));
    /// # Ok(()) }
    /// ```
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()>;

    /// Removes `key`; `true` when it existed.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Whether `key` holds a live value.
    async fn exists(&self, key: &str) -> Result<bool>;

    /// The remaining time to live of `key`, `None` when absent.
    async fn ttl(&self, key: &str) -> Result<Option<Duration>>;

    /// The values of `keys`, in the same order, in one round trip.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Stores every `(key, value)` pair with the same TTL, in one round trip. Every pair is
    /// validated before anything is written: a batch with one bad key writes nothing.
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration) -> Result<()>;

    /// Removes every key starting with `prefix` (never with a blocking `KEYS`); returns how
    /// many were removed. An empty prefix is refused.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64>;
}

/// The future every [`Cache`] method returns (what `#[async_trait]` generates).
type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

// Written out rather than with `#[async_trait]`: an `async fn` here would box a second future
// around the inner one on every call through an `Arc` or a `Box`; this hands the inner
// backend's future back as it is.
macro_rules! forward_cache {
    ($($ty:ty),*) => {$(
        impl<T: Cache + ?Sized> Cache for $ty {
            fn get<'s, 'k, 'f>(&'s self, key: &'k str) -> CacheFuture<'f, Option<Vec<u8>>>
            where
                's: 'f,
                'k: 'f,
                Self: 'f,
            {
                (**self).get(key)
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
                (**self).set(key, value, ttl)
            }
            fn delete<'s, 'k, 'f>(&'s self, key: &'k str) -> CacheFuture<'f, bool>
            where
                's: 'f,
                'k: 'f,
                Self: 'f,
            {
                (**self).delete(key)
            }
            fn exists<'s, 'k, 'f>(&'s self, key: &'k str) -> CacheFuture<'f, bool>
            where
                's: 'f,
                'k: 'f,
                Self: 'f,
            {
                (**self).exists(key)
            }
            fn ttl<'s, 'k, 'f>(&'s self, key: &'k str) -> CacheFuture<'f, Option<Duration>>
            where
                's: 'f,
                'k: 'f,
                Self: 'f,
            {
                (**self).ttl(key)
            }
            fn get_many<'s, 'k, 'f>(
                &'s self,
                keys: &'k [String],
            ) -> CacheFuture<'f, Vec<Option<Vec<u8>>>>
            where
                's: 'f,
                'k: 'f,
                Self: 'f,
            {
                (**self).get_many(keys)
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
                (**self).set_many(entries, ttl)
            }
            fn delete_prefix<'s, 'k, 'f>(&'s self, prefix: &'k str) -> CacheFuture<'f, u64>
            where
                's: 'f,
                'k: 'f,
                Self: 'f,
            {
                (**self).delete_prefix(prefix)
            }
        }
    )*};
}

forward_cache!(Arc<T>, Box<T>);

/// Typed JSON on top of any [`Cache`] (`dyn Cache` included): any serde type in, the same
/// type out.
///
/// Its methods return unboxed futures (only the backend's own call is boxed, as the
/// object-safe [`Cache`] requires), so the typed layer costs no allocation of its own.
///
/// ```
/// use std::time::Duration;
/// use infra_core::{Cache, CacheExt, Result};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Preferences { timezone: String }
///
/// async fn save(cache: &dyn Cache, user: u64, prefs: &Preferences) -> Result<()> {
///     cache.set_json(&format!("user:{user}:prefs"), prefs, Duration::from_secs(300)).await
/// }
///
/// async fn load(cache: &dyn Cache, user: u64) -> Result<Option<Preferences>> {
///     cache.get_json(&format!("user:{user}:prefs")).await
/// }
/// ```
pub trait CacheExt: Cache {
    /// Reads `key` as JSON into `T`. A value that no longer decodes is an
    /// [`ErrorKind::Decode`] error naming the key; other keys are untouched.
    ///
    /// ```
    /// # async fn demo(cache: &dyn infra_core::Cache) -> infra_core::Result<()> {
    /// use infra_core::CacheExt;
    /// let ids: Option<Vec<u64>> = cache.get_json("team:7:members").await?;
    /// # let _ = ids; Ok(()) }
    /// ```
    fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<T>>> + Send {
        async move {
            match self.get(key).await? {
                None => Ok(None),
                Some(bytes) => decode_json(key, &bytes).map(Some),
            }
        }
    }

    /// Writes `value` as JSON under `key` for `ttl`.
    ///
    /// ```
    /// # async fn demo(cache: &dyn infra_core::Cache) -> infra_core::Result<()> {
    /// use std::time::Duration;
    /// use infra_core::CacheExt;
    /// cache.set_json("team:7:members", &[1u64, 2, 3], Duration::from_secs(60)).await?;
    /// # Ok(()) }
    /// ```
    fn set_json<T: Serialize + Sync + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            let bytes = encode_json(key, value)?;
            self.set(key, &bytes, ttl).await
        }
    }

    /// Cache-aside: returns the cached value, or runs `load`, caches its result for `ttl`
    /// and returns it. A value that no longer decodes is treated as a miss and replaced.
    ///
    /// ```
    /// # async fn count_members_in_db(team: u64) -> infra_core::Result<u64> { Ok(team) }
    /// # async fn demo(cache: &dyn infra_core::Cache) -> infra_core::Result<()> {
    /// use std::time::Duration;
    /// use infra_core::CacheExt;
    /// let count: u64 = cache
    ///     .get_or_set_json("team:7:count", Duration::from_secs(60), || count_members_in_db(7))
    ///     .await?;
    /// # let _ = count; Ok(()) }
    /// ```
    fn get_or_set_json<T, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> impl Future<Output = Result<T>> + Send
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
    {
        async move {
            match self.get_json::<T>(key).await {
                Ok(Some(hit)) => return Ok(hit),
                Ok(None) => {}
                Err(e) if e.kind() == ErrorKind::Decode => {}
                Err(e) => return Err(e),
            }
            let value = load().await?;
            self.set_json(key, &value, ttl).await?;
            Ok(value)
        }
    }
}

impl<C: Cache + ?Sized> CacheExt for C {}

/// Decodes a cached JSON value, naming the key on failure.
pub fn decode_json<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!(
                "cached value under `{key}` does not decode into {}: {e}",
                std::any::type_name::<T>()
            ),
        )
        .with_context("key", key)
        .with_source(e)
    })
}

/// Encodes a value as JSON, naming the key on failure.
pub fn encode_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| {
        Error::invalid_input(
            "value",
            format_args!("for `{key}` does not encode as JSON: {e}"),
        )
        .with_context("key", key)
        .with_source(e)
    })
}

/// Limits every backend enforces on input, so bad input fails the same way everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Longest key, in bytes (after any namespace prefix is added by the backend).
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Longest TTL.
    pub max_ttl: Duration,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_key_bytes: 1024,
            max_value_bytes: 8 * 1024 * 1024,
            max_ttl: Duration::from_secs(365 * 86_400),
        }
    }
}

impl CacheLimits {
    /// Refuses empty keys and keys over the limit.
    pub fn check_key(&self, key: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid_input("key", "must not be empty"));
        }
        if key.len() > self.max_key_bytes {
            return Err(Error::invalid_input(
                "key",
                format_args!(
                    "is {} bytes; the limit is {}",
                    key.len(),
                    self.max_key_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Refuses values over the limit.
    pub fn check_value(&self, key: &str, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_bytes {
            return Err(Error::invalid_input(
                "value",
                format_args!(
                    "for `{key}` is {} bytes; the limit is {}",
                    value.len(),
                    self.max_value_bytes
                ),
            )
            .with_context("key", key));
        }
        Ok(())
    }

    /// Refuses a zero TTL (it would store nothing) and TTLs over the limit.
    pub fn check_ttl(&self, ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            return Err(Error::invalid_input("ttl", "must be greater than zero"));
        }
        if ttl < Duration::from_millis(1) {
            return Err(Error::invalid_input("ttl", "must be at least 1ms"));
        }
        if ttl > self.max_ttl {
            return Err(Error::invalid_input(
                "ttl",
                format_args!("is longer than the limit of {}s", self.max_ttl.as_secs()),
            ));
        }
        Ok(())
    }

    /// Refuses an empty prefix, which would mean "delete everything".
    pub fn check_prefix(&self, prefix: &str) -> Result<()> {
        if prefix.is_empty() {
            return Err(Error::invalid_input(
                "prefix",
                "must not be empty (it would delete every key)",
            ));
        }
        self.check_key(prefix).map_err(|_| {
            Error::invalid_input(
                "prefix",
                format_args!(
                    "is longer than the key limit of {} bytes",
                    self.max_key_bytes
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_field() {
        let limits = CacheLimits {
            max_key_bytes: 4,
            max_value_bytes: 2,
            ..CacheLimits::default()
        };
        assert_eq!(limits.check_key("").unwrap_err().field(), Some("key"));
        assert!(
            limits
                .check_key("12345")
                .unwrap_err()
                .to_string()
                .contains("limit is 4")
        );
        assert_eq!(
            limits.check_value("k", b"abc").unwrap_err().field(),
            Some("value")
        );
        assert_eq!(
            limits.check_ttl(Duration::ZERO).unwrap_err().field(),
            Some("ttl")
        );
        assert_eq!(limits.check_prefix("").unwrap_err().field(), Some("prefix"));
        assert!(limits.check_key("abcd").is_ok());
    }

    #[test]
    fn decode_error_names_key() {
        let err = decode_json::<u32>("user:1", b"\"text\"").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert_eq!(err.context("key"), Some("user:1"));
        assert!(err.to_string().contains("user:1"));
    }
}
