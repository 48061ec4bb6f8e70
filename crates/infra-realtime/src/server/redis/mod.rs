//! The cluster over Redis (`server-redis`): N server processes sharing one Redis, or one Redis
//! Cluster, act as one server. The same code serves both (`link`'s connection routes each
//! command to its slot's master on a cluster); what differs is the bus (plain or sharded
//! pub/sub) and that every script's keys share a slot (`keys`).
//!
//! Three tasks per node, so nothing on a connection's path waits for Redis:
//! - the bus publisher (`bus`): frames this node delivered go to `p:bus` (its shards on a
//!   cluster), in the order they were handed over;
//! - the state writer (`presence`): changes of this node's part of channels, applied one at a
//!   time in the hubs' order through the scripts (`scripts`, over the layout of `keys`), which
//!   decide cluster-wide transitions;
//! - the supervisor (`supervisor`): (re)connects with back-off, reads the bus, renews the
//!   node's lease and cleans up nodes whose lease ran out (`lease`).
//!
//! While Redis is unreachable the node serves its own clients alone (degraded, in `health`);
//! on reconnect, or when it finds its lease had run out, it writes its whole state again.

mod bus;
mod cache_channel;
mod keys;
mod lease;
mod link;
mod presence;
mod scripts;
mod state_queue;
mod supervisor;
mod watchlist;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use infra_core::{Error, Result};

use self::bus::RedisBus;
use self::cache_channel::RedisCacheChannels;
use self::keys::SEP;
use self::link::Link;
use self::presence::RedisPresence;
use self::supervisor::Supervisor;
use self::watchlist::RedisWatchlist;
use crate::server::app_config::AppConfig;
use crate::server::bus::{Bus, BusHandler};
use crate::server::cluster::{Cluster, ClusterHealth, ClusterLink};
use crate::server::cluster_config::{ClusterConfig, REDIS_URL_VAR};
use crate::server::presence_store::PresenceHandler;

/// The cluster parts of a node of `apps` over the Redis of `config`; nothing runs before
/// [`ClusterLink::start`].
pub(crate) fn cluster(config: ClusterConfig, apps: &[AppConfig]) -> Result<Cluster> {
    config.check()?;
    for app in apps {
        if app.id.contains(SEP) || app.id.contains(':') {
            // The id comes from the apps file or PUSHER_APP_ID; the file is the usual case.
            return Err(Error::config(
                "INFRA_REALTIME_APPS_FILE",
                "an app id (or PUSHER_APP_ID) of a clustered server contains `:` or a control \
                 character, which Redis keys cannot tell apart",
            ));
        }
    }
    let member_limits = apps
        .iter()
        .map(|app| (app.id.clone(), app.limits.max_presence_members))
        .collect::<HashMap<_, _>>();
    let link = Arc::new(Link::new(config)?);
    let bus = Arc::new(RedisBus::new(link.config.node_id.clone()));
    let presence = Arc::new(RedisPresence::new(link.clone(), member_limits));
    let cache = Arc::new(RedisCacheChannels::new(link.clone()));
    let watchlist = Arc::new(RedisWatchlist::new(link.clone()));
    let membership = Arc::new(RedisMembership {
        link,
        bus: bus.clone(),
        presence: Arc::downgrade(&presence),
        cache: cache.clone(),
    });
    Ok(Cluster {
        bus,
        presence,
        link: membership,
        cache,
        watchlist,
    })
}

/// The node's membership of its cluster over Redis.
struct RedisMembership {
    link: Arc<Link>,
    bus: Arc<RedisBus>,
    /// Weak: the store is the node's, and dropping it ends the state writer.
    presence: Weak<RedisPresence>,
    cache: Arc<RedisCacheChannels>,
}

#[async_trait]
impl ClusterLink for RedisMembership {
    fn start(&self, hub: Weak<dyn BusHandler>, node: Weak<dyn PresenceHandler>) -> Result<()> {
        // Without a runtime nothing would drain the queues the hubs fill.
        tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                REDIS_URL_VAR,
                "is set, so the server must be created inside a tokio runtime",
            )
        })?;
        let Some(presence) = self.presence.upgrade() else {
            return Ok(());
        };
        self.bus.start(self.link.clone());
        self.cache.start();
        presence.start(node.clone());
        tokio::spawn(
            Supervisor {
                link: self.link.clone(),
                bus: self.bus.clone(),
                ops: presence.queue(),
                hub,
                node,
            }
            .run(),
        );
        Ok(())
    }

    async fn ready(&self, wait: Duration) -> bool {
        let mut rx = self.link.connected.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn leave(&self) {
        if let Some(presence) = self.presence.upgrade() {
            presence.leave().await;
        }
        self.bus.flush().await;
    }

    fn health(&self) -> ClusterHealth {
        let config = &self.link.config;
        if *self.link.connected.borrow() {
            ClusterHealth {
                healthy: true,
                detail: format!(
                    "node `{}` of cluster `{}` with {} live node(s) over Redis",
                    config.node_id,
                    config.key_prefix,
                    self.link.live_nodes.load(Ordering::Relaxed)
                ),
            }
        } else {
            let error = self
                .link
                .last_error()
                .unwrap_or_else(|| "not connected yet".into());
            ClusterHealth {
                healthy: false,
                detail: format!(
                    "node `{}` cannot reach the cluster's Redis ({error}); serving its own \
                     clients only ({} relayed frame(s) dropped)",
                    config.node_id,
                    self.bus.dropped()
                ),
            }
        }
    }
}
