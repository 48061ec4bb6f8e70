//! Tag-based invalidation: a write names the tags it belongs to; invalidating a tag removes
//! every key written with it ("invalidate on update" when one record feeds many keys).

use std::time::Duration;

use async_trait::async_trait;
use infra_core::{Cache, Error, Result, encode_json};
use serde::Serialize;

/// The namespace of tag sets inside the cache: keys starting with it are reserved.
pub const TAG_KEY_PREFIX: &str = "__tag:";

/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 256;

/// A [`Cache`] whose writes can carry tags.
///
/// Invalidation errs on the side of removing too much: a key rewritten later without a tag
/// (or with other tags) is still removed by its earlier tags, never left stale.
///
/// ```
/// # #[cfg(feature = "memory")] { // the example uses the memory backend
/// use std::time::Duration;
/// use infra_cache::{MemoryCache, TaggedCache};
/// use infra_core::Cache;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache = MemoryCache::new(Default::default());
/// let ttl = Duration::from_secs(300);
/// cache.set_tagged("prefs:42", b"{}", ttl, &["user:42"]).await.unwrap();
/// cache.set_tagged("dashboard:42", b"{}", ttl, &["user:42", "team:7"]).await.unwrap();
/// // User 42 changed their settings: drop everything derived from them.
/// assert_eq!(cache.invalidate_tag("user:42").await.unwrap(), 2);
/// assert!(!cache.exists("dashboard:42").await.unwrap());
/// # });
/// # }
/// ```
#[async_trait]
pub trait TaggedCache: Cache {
    /// Stores `value` under `key` for `ttl` and records it under every tag. The tag sets live
    /// at least as long as the key.
    async fn set_tagged(&self, key: &str, value: &[u8], ttl: Duration, tags: &[&str])
    -> Result<()>;

    /// Removes every key written with `tag` and forgets the tag; returns how many live keys
    /// were removed.
    async fn invalidate_tag(&self, tag: &str) -> Result<u64>;
}

/// Typed JSON on top of any [`TaggedCache`].
#[async_trait]
pub trait TaggedCacheExt: TaggedCache {
    /// Writes `value` as JSON under `key` for `ttl`, tagged with `tags`.
    async fn set_json_tagged<T: Serialize + Sync>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
        tags: &[&str],
    ) -> Result<()> {
        let bytes = encode_json(key, value)?;
        self.set_tagged(key, &bytes, ttl, tags).await
    }
}

impl<C: TaggedCache + ?Sized> TaggedCacheExt for C {}

/// Refuses empty tags and tags over [`MAX_TAG_BYTES`].
#[cfg_attr(
    not(any(feature = "redis", feature = "memory", feature = "upstash")),
    allow(dead_code)
)]
pub(crate) fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty() {
        return Err(Error::invalid_input("tag", "must not be empty"));
    }
    if tag.len() > MAX_TAG_BYTES {
        return Err(Error::invalid_input(
            "tag",
            format_args!("is {} bytes; the limit is {MAX_TAG_BYTES}", tag.len()),
        ));
    }
    Ok(())
}

/// The cache key holding the set of keys tagged `tag` (before any namespace prefix).
#[cfg(any(feature = "redis", feature = "upstash"))]
pub(crate) fn tag_key(tag: &str) -> String {
    format!("{TAG_KEY_PREFIX}{tag}")
}
