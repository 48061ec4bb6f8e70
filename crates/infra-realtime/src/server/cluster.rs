//! What a node has beyond itself when it is one of several: a bus, a presence store, and the
//! link that keeps both connected and the node a member of its cluster.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;

use super::bus::{Bus, BusHandler};
use super::cache_store::CacheStore;
use super::presence_store::{PresenceHandler, PresenceStore};
use super::watchlist::WatchlistStore;

/// The cluster parts of a node (`server-redis`: all three over one Redis).
pub(crate) struct Cluster {
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn PresenceStore>,
    pub link: Arc<dyn ClusterLink>,
    /// The last event of each cache channel.
    pub cache: Arc<dyn CacheStore>,
    /// Who is online over the cluster, and who watches whom.
    pub watchlist: Arc<dyn WatchlistStore>,
}

/// Whether the node reaches the rest of its cluster, for its health check.
#[derive(Debug, Clone)]
pub(crate) struct ClusterHealth {
    pub healthy: bool,
    pub detail: String,
}

/// The node's membership of its cluster: connecting, staying a member, leaving.
#[async_trait]
pub(crate) trait ClusterLink: Send + Sync {
    /// Starts the background work; the handlers are weak, so dropping the node stops it.
    fn start(
        &self,
        bus: Weak<dyn BusHandler>,
        presence: Weak<dyn PresenceHandler>,
    ) -> infra_core::Result<()>;

    /// Waits until the node reaches the cluster (true), or gives up after `wait`.
    async fn ready(&self, wait: Duration) -> bool;

    /// Leaves the cluster on a graceful shutdown: writes what is queued, then gives up the
    /// node's state at once instead of letting the survivors wait for its lease to run out.
    async fn leave(&self);

    /// How the node's link to the cluster is.
    fn health(&self) -> ClusterHealth;
}
