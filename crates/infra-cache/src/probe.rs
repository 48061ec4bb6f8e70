//! The health probe's round trip: write a probe key, read it back, delete it.
//!
//! A `PING` (or, in memory, counting entries) says a backend answers, not that it works: a
//! Redis over `maxmemory` with `noeviction`, a replica promoted read-only or a token without
//! write rights all answer `PING`. Every backend's probe runs this through its own `Cache`
//! methods, so the check exercises the path real calls take (namespace prefix, limits,
//! encoding) and fails the way they would.

use std::future::Future;
use std::time::Duration;

use infra_core::{Cache, Error, Result};

/// Keys starting with this (after the namespace prefix) are the probe's own.
pub(crate) const PROBE_KEY_PREFIX: &str = "__health:probe:";

/// The probe key outlives a probe that dies half-way (deadline, crash) only this long.
const PROBE_TTL: Duration = Duration::from_secs(30);

/// Writes a random value under a fresh probe key, reads it back and deletes it.
pub(crate) async fn write_read_delete(cache: &dyn Cache) -> Result<()> {
    write_read_delete_reading(cache, |key| async move { cache.get(&key).await }).await
}

/// [`write_read_delete`], reading back with `read` (Redis Cluster reads the probe key from the
/// master even when other reads may go to a replica, which may not have the write yet).
pub(crate) async fn write_read_delete_reading<F, Fut>(cache: &dyn Cache, read: F) -> Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Option<Vec<u8>>>>,
{
    let nonce = rand::random::<u64>();
    let key = format!("{PROBE_KEY_PREFIX}{nonce:016x}");
    let value = nonce.to_be_bytes();
    cache
        .set(&key, &value, PROBE_TTL)
        .await
        .map_err(|e| in_step("write", e))?;
    let read = read(key.clone()).await.map_err(|e| in_step("read", e))?;
    if read.as_deref() != Some(&value[..]) {
        return Err(Error::backend(format!(
            "health probe: the probe key read back {} after the write",
            if read.is_some() {
                "a different value"
            } else {
                "nothing"
            }
        )));
    }
    if !cache.delete(&key).await.map_err(|e| in_step("delete", e))? {
        return Err(Error::backend(
            "health probe: the probe key was gone before its delete",
        ));
    }
    Ok(())
}

/// Keeps the failed call's kind, context (the variable or field it names) and retryable flag,
/// and says which step failed.
fn in_step(step: &str, err: Error) -> Error {
    let mut wrapped = Error::new(
        err.kind(),
        format!("health probe {step} failed: {}", err.message()),
    )
    .with_retryable(err.is_retryable());
    for (key, value) in err.context_pairs() {
        wrapped = wrapped.with_context(key, value);
    }
    wrapped.with_source(err)
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::{MemoryCache, MemoryConfig};

    #[tokio::test]
    async fn round_trip_leaves_nothing_behind() {
        let cache = MemoryCache::new(MemoryConfig::default());
        write_read_delete(&cache).await.unwrap();
        assert_eq!(cache.usage().await.0, 0);
    }
}
