//! The node: one server process, composed of its hub (this node's state), and on a cluster a
//! bus (frames to and from the other nodes) and a presence store (the channel state of all
//! nodes together). A single node is a hub alone: no bus, local presence.
//!
//! What spans the cluster goes through here: a publish is delivered to this node's sockets
//! first, then handed to the bus; a query is answered by the store, or by the hub when there is
//! none or it cannot answer; what the store decides (a channel occupied or vacated, a member
//! added or gone, a join's member list) comes back through [`PresenceHandler`], and is
//! delivered here, published on the bus and sent to the app's webhook.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use infra_core::Result;
use infra_core::http_server::TrustedProxies;
use serde_json::Value;

use super::bus::BusHandler;
use super::cluster::{Cluster, ClusterHealth};
use super::hub::{AppHub, Hub, UserChanges, is_cache_channel};
use super::presence_store::{
    ChannelStats, JoinAnswer, JoinOutcome, PresenceHandler, PresenceStore, StateChange, StateLog,
};
use super::protocol::{frame, member_added, member_removed};
use super::server_config::ServerConfig;
use super::server_metrics::ServerMetrics;
use super::state_counts::StateCounts;
use super::subscription_counter::{CountChanges, SUBSCRIPTION_COUNT_EVENT};
use super::watchlist::{self, LocalWatchlist, WatchlistStore};
use super::webhook_event::WebhookEvent;
use super::webhook_queue::{StillLeft, WebhookQueue};

/// One server process.
pub(crate) struct Node {
    hub: Arc<Hub>,
    cluster: Option<Cluster>,
    /// Who is online and who watches whom: the cluster's, or this node's own.
    watchlist: Arc<dyn WatchlistStore>,
    /// Silence after which a client is pinged (sent to clients as `activity_timeout`).
    pub activity_timeout: Duration,
    /// How long a pinged client has to answer.
    pub pong_timeout: Duration,
    /// How long one WebSocket write may take.
    pub write_timeout: Duration,
    /// Who may name a connection's client address in `X-Forwarded-For`.
    pub trusted_proxies: TrustedProxies,
    /// The server's metric handles (connections' frames, the API's answers, the gauges).
    pub metrics: ServerMetrics,
}

impl Node {
    /// A node for `config` (at least one app), joined to its cluster when it names one.
    pub fn start(config: ServerConfig) -> Result<Arc<Node>> {
        let cluster = join_cluster(&config)?;
        let store = cluster.as_ref().map(|c| c.presence.clone());
        let leave_delay = config.leave_delay;
        let count_changes = CountChanges::new(config.subscription_count_interval);
        let retry_for = config.webhook_retry_for;
        let apps = config
            .apps
            .into_iter()
            .map(|app| {
                let webhooks = app.webhook_url.clone().map(|url| {
                    let queue = WebhookQueue::new(
                        url,
                        app.key.clone(),
                        app.secret.clone(),
                        leave_delay,
                        retry_for,
                    );
                    match &store {
                        Some(store) => queue.with_leave_check(still_left(store.clone(), &app.id)),
                        None => queue,
                    }
                });
                let log = store.clone().map(|store| store as Arc<dyn StateLog>);
                let counts = app.subscription_count.then(|| count_changes.clone());
                AppHub::new(app, webhooks, log, counts)
            })
            .collect();
        let watchlist = match &cluster {
            Some(cluster) => cluster.watchlist.clone(),
            None => Arc::new(LocalWatchlist::default()) as Arc<dyn WatchlistStore>,
        };
        let node = Arc::new(Node {
            hub: Arc::new(Hub::new(apps)),
            cluster,
            watchlist,
            activity_timeout: config.activity_timeout,
            pong_timeout: config.pong_timeout,
            write_timeout: config.write_timeout,
            trusted_proxies: config.trusted_proxies,
            metrics: ServerMetrics::new(),
        });
        count_changes.bind(Arc::downgrade(&node));
        let changes = user_changes(Arc::downgrade(&node));
        for app in node.hub.apps() {
            if app.config.watchlist_events {
                app.set_user_changes(changes.clone());
            }
        }
        if node.cluster.is_some() {
            for app in node.hub.apps() {
                app.set_cache_lookup(cache_lookup(Arc::downgrade(&node), &app.config.id));
            }
        }
        if let Some(cluster) = &node.cluster {
            let hub: Weak<Hub> = Arc::downgrade(&node.hub);
            let handler: Weak<Node> = Arc::downgrade(&node);
            cluster.link.start(hub as Weak<dyn BusHandler>, handler)?;
        }
        Ok(node)
    }

    /// This node's state.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Who is online and who watches whom.
    pub fn watchlist_store(&self) -> &Arc<dyn WatchlistStore> {
        &self.watchlist
    }

    /// Delivers a frame on a server route (not a channel clients subscribe to): here, then on
    /// the other nodes.
    pub fn route(&self, app: &AppHub, route: &str, message: &str) {
        let message = Utf8Bytes::from(message.to_owned());
        app.deliver(route, &message, None);
        if let Some(cluster) = &self.cluster {
            cluster.bus.publish(&app.config.id, route, &message, None);
        }
    }

    /// Whether other nodes share the channels.
    pub fn is_clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Delivers an event on a channel to every subscriber but `except`: here, then on the
    /// other nodes.
    pub fn publish(
        &self,
        app: &AppHub,
        channel: &str,
        event: &str,
        data: &str,
        except: Option<&str>,
    ) {
        let message = Utf8Bytes::from(frame(event, Some(channel), &Value::String(data.into())));
        app.deliver(channel, &message, except);
        if let Some(cluster) = &self.cluster {
            if is_cache_channel(channel) && event != SUBSCRIPTION_COUNT_EVENT {
                cluster.cache.keep(&app.config.id, channel, &message);
            }
            cluster
                .bus
                .publish(&app.config.id, channel, &message, except);
        }
    }

    /// A client event of `socket_id`: to the channel's other subscribers on every node, and to
    /// the webhook.
    pub fn client_event(
        &self,
        app: &AppHub,
        socket_id: &str,
        channel: &str,
        event: &str,
        data: &Value,
        user_id: Option<&str>,
    ) {
        let message = app.client_event(socket_id, channel, event, data, user_id);
        if let Some(cluster) = &self.cluster {
            cluster
                .bus
                .publish(&app.config.id, channel, &message, Some(socket_id));
        }
    }

    /// Closes every connection of a signed-in user (4009), on every node.
    pub fn terminate_user(&self, app: &AppHub, user_id: &str) {
        app.terminate_user(user_id);
        if let Some(cluster) = &self.cluster {
            cluster.bus.terminate_user(&app.config.id, user_id);
        }
    }

    /// Waits until what this node published so far reached the other nodes' bus.
    pub async fn flush(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.bus.flush().await;
        }
    }

    /// Occupied channels over the cluster whose names start with `prefix`.
    pub async fn channels(&self, app: &AppHub, prefix: &str) -> BTreeMap<String, ChannelStats> {
        match self.store() {
            Some(store) => match store.channels(&app.config.id, prefix).await {
                Ok(found) => found,
                Err(_) => app.channels(prefix),
            },
            None => app.channels(prefix),
        }
    }

    /// One channel's counts over the cluster (`None`: unoccupied).
    pub async fn channel(&self, app: &AppHub, name: &str) -> Option<ChannelStats> {
        match self.store() {
            Some(store) => match store.channel(&app.config.id, name).await {
                Ok(found) => found,
                Err(_) => app.channel(name),
            },
            None => app.channel(name),
        }
    }

    /// A presence channel's user ids over the cluster, sorted.
    pub async fn users(&self, app: &AppHub, name: &str) -> Vec<String> {
        match self.store() {
            Some(store) => match store.users(&app.config.id, name).await {
                Ok(found) => found,
                Err(_) => app.users(name),
            },
            None => app.users(name),
        }
    }

    fn store(&self) -> Option<&Arc<dyn PresenceStore>> {
        self.cluster.as_ref().map(|c| &c.presence)
    }

    /// Waits until the node reaches its cluster (true at once for a single node); false after
    /// `wait`, the node then serves its own clients and keeps trying.
    pub async fn ready(&self, wait: Duration) -> bool {
        match &self.cluster {
            Some(cluster) => cluster.link.ready(wait).await,
            None => true,
        }
    }

    /// Leaves the cluster (nothing to do for a single node).
    pub async fn leave(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.link.leave().await;
        }
    }

    /// How the node's link to its cluster is.
    pub fn health(&self) -> ClusterHealth {
        match &self.cluster {
            Some(cluster) => cluster.link.health(),
            None => ClusterHealth {
                healthy: true,
                detail: "single node".into(),
            },
        }
    }

    /// What the node holds over all apps, and what waits to leave it.
    pub fn counts(&self) -> StateCounts {
        let queued = StateCounts {
            cluster_changes_queued: self.store().map_or(0, |store| store.pending()),
            ..StateCounts::default()
        };
        self.hub
            .apps()
            .iter()
            .map(|app| app.counts())
            .fold(queued, |a, b| a + b)
    }

    /// A channel's subscription count over the cluster (`None`: the app is unknown).
    pub async fn subscription_count(&self, app_id: &str, channel: &str) -> Option<usize> {
        let app = self.hub.by_id(app_id)?.clone();
        if let Some(store) = self.store() {
            // This node's change is on its way to the store: let it land first (bounded, so a
            // slow Redis delays the count, never stops it).
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            while store.pending() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Some(
            self.channel(&app, channel)
                .await
                .map_or(0, |stats| stats.subscription_count),
        )
    }

    /// Sends a channel's subscription count to its subscribers on every node (when it has
    /// any) and to the `subscription_count` webhook.
    pub fn send_subscription_count(&self, app_id: &str, channel: &str, count: usize) {
        let Some(app) = self.hub.by_id(app_id) else {
            return;
        };
        if count > 0 {
            let data = serde_json::json!({ "subscription_count": count }).to_string();
            self.publish(app, channel, SUBSCRIPTION_COUNT_EVENT, &data, None);
        }
        app.webhook(WebhookEvent::SubscriptionCount {
            channel: channel.to_owned(),
            subscription_count: count,
        });
    }

    /// A member frame of member-list `version`: here, then on the other nodes.
    #[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
    fn publish_member_event(
        &self,
        app: &AppHub,
        channel: &str,
        message: Utf8Bytes,
        except: Option<&str>,
        version: u64,
    ) {
        app.deliver_member_event(channel, &message, except, version);
        if let Some(cluster) = &self.cluster {
            cluster
                .bus
                .publish_member_event(&app.config.id, channel, &message, except, version);
        }
    }
}

/// The store's decisions, acted on by the one node it told.
impl PresenceHandler for Node {
    fn occupancy(&self, app_id: &str, channel: String, occupied: bool) {
        if let Some(app) = self.hub.by_id(app_id) {
            app.webhook(if occupied {
                WebhookEvent::ChannelOccupied { channel }
            } else {
                WebhookEvent::ChannelVacated { channel }
            });
        }
    }

    fn joined(&self, app_id: &str, answer: JoinAnswer) {
        let Some(app) = self.hub.by_id(app_id) else {
            return;
        };
        let JoinAnswer {
            channel,
            socket_id,
            user_id,
            user_info,
            new_member,
            outcome,
        } = answer;
        if let JoinOutcome::Joined { version, .. } = &outcome {
            // Before announcing: a version that went back must not hide this frame (or later
            // ones) from this node's sockets.
            app.cap_presence_versions(&channel, *version);
            // Announced before the joiner is answered: the frame is then on its way to the bus
            // before anyone can learn of the join and join elsewhere, so a later joiner finds
            // the member in its list and (its subscription still pending when the frame lands)
            // is not told a second time.
            if new_member {
                let added = Utf8Bytes::from(member_added(&channel, &user_id, &user_info));
                self.publish_member_event(app, &channel, added, socket_id.as_deref(), *version);
                app.webhook(WebhookEvent::MemberAdded {
                    channel: channel.clone(),
                    user_id,
                });
            }
        }
        if let Some(socket_id) = &socket_id {
            app.complete_join(socket_id, &channel, outcome);
        }
    }

    fn member_left(&self, app_id: &str, channel: String, user_id: String, version: u64) {
        let Some(app) = self.hub.by_id(app_id) else {
            return;
        };
        let removed = Utf8Bytes::from(member_removed(&channel, &user_id));
        self.publish_member_event(app, &channel, removed, None, version);
        app.webhook(WebhookEvent::MemberRemoved { channel, user_id });
    }

    fn snapshot(&self, app_id: &str) -> Vec<StateChange> {
        self.hub
            .by_id(app_id)
            .map(|app| app.snapshot())
            .unwrap_or_default()
    }
}

/// Asks the store whether a delayed leave webhook still holds: a return within the delay may
/// have landed on another node, whose arrival webhook went out already.
fn still_left(store: Arc<dyn PresenceStore>, app_id: &str) -> StillLeft {
    let app_id = app_id.to_owned();
    Arc::new(move |event| {
        let store = store.clone();
        let app_id = app_id.clone();
        Box::pin(async move {
            match event {
                WebhookEvent::ChannelVacated { channel } => {
                    !matches!(store.channel(&app_id, &channel).await, Ok(Some(_)))
                }
                WebhookEvent::MemberRemoved { channel, user_id } => !store
                    .users(&app_id, &channel)
                    .await
                    .is_ok_and(|users| users.contains(&user_id)),
                _ => true,
            }
        })
    })
}

/// Asks the cluster's cache store for the last event of a cache channel a socket of `app_id`
/// subscribed to, and hands the answer (a miss when the store cannot answer) back to the hub.
fn cache_lookup(node: Weak<Node>, app_id: &str) -> super::hub::CacheLookup {
    let app_id = app_id.to_owned();
    Arc::new(move |socket_id, channel| {
        let node = node.clone();
        let app_id = app_id.clone();
        tokio::spawn(async move {
            let Some(node) = node.upgrade() else {
                return;
            };
            let Some(cluster) = &node.cluster else {
                return;
            };
            let found = match cluster.cache.last(&app_id, &channel).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "cache channel lookup failed: answered as a miss");
                    None
                }
            };
            if let Some(app) = node.hub.by_id(&app_id) {
                app.finish_cache_lookup(&socket_id, &channel, found);
            }
        });
    })
}

/// Hands the hubs' user changes to the watchlist task (started with the first change, in the
/// runtime that made it); a change that finds the queue full is dropped and logged.
fn user_changes(node: Weak<Node>) -> UserChanges {
    let (tx, rx) = tokio::sync::mpsc::channel(watchlist::QUEUE);
    let rx = std::sync::Mutex::new(Some(rx));
    Arc::new(move |change| {
        if let Some(rx) = rx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tokio::spawn(watchlist::run(rx, node.clone()));
        }
        if tx.try_send(change).is_err() {
            tracing::warn!("watchlist change dropped: the watchlist task is behind");
        }
    })
}

/// The cluster the configuration names: Redis when one is configured.
fn join_cluster(config: &ServerConfig) -> Result<Option<Cluster>> {
    let Some(cluster) = &config.cluster else {
        return Ok(None);
    };
    #[cfg(feature = "server-redis")]
    {
        super::redis::cluster(cluster.clone(), &config.apps).map(Some)
    }
    #[cfg(not(feature = "server-redis"))]
    {
        let variable = if cluster.cluster_nodes.is_some() {
            super::cluster_config::REDIS_CLUSTER_NODES_VAR
        } else {
            super::cluster_config::REDIS_URL_VAR
        };
        Err(infra_core::Error::config(
            variable,
            "is set but infra-realtime was built without its `server-redis` feature",
        ))
    }
}
