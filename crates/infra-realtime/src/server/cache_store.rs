//! Where a cluster keeps the last event of each cache channel (`cache-…`), so a subscriber on
//! any node gets it, whichever node it was published through and whether or not that node was
//! running then. Pusher keeps it for 30 minutes.

use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;

/// How long the last event of a cache channel is kept: Pusher's 30 minutes.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

/// The cluster's cache channel store.
#[async_trait]
pub(crate) trait CacheStore: Send + Sync {
    /// Keeps `message` as the last event of `channel` (in the background: never waits).
    fn keep(&self, app_id: &str, channel: &str, message: &Utf8Bytes);

    /// The last event of `channel` kept within the TTL; `Err` when the store cannot answer.
    async fn last(&self, app_id: &str, channel: &str) -> Result<Option<Utf8Bytes>, String>;
}
