//! `RealtimeServer`, the server's public handle: the router to mount, `Realtime` without HTTP,
//! counts, health and shutdown, over one [`Node`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::routing::{get, post};
use infra_core::{BatchEvent, ChannelName, Error, EventName, HealthCheck, Probe, Realtime, Result};

use super::app_config::AppConfig;
use super::connection;
use super::http_api;
use super::hub::AppHub;
use super::node::Node;
use super::protocol::CloseCode;
use super::server_config::ServerConfig;
use super::state_counts::StateCounts;
use crate::limits::{check_batch, check_trigger};

/// A Pusher-protocol server living in this process.
///
/// Mount [`RealtimeServer::router`] on the app's axum server (or run the
/// `infra-realtime-server` binary); trigger through the [`Realtime`] trait, which publishes
/// straight to the connected sockets of the first app, without HTTP.
#[derive(Clone)]
pub struct RealtimeServer {
    node: Arc<Node>,
}

impl std::fmt::Debug for RealtimeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeServer")
            .field("apps", &self.node.hub().apps().len())
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl RealtimeServer {
    /// A server for `config`, which must name at least one app.
    pub fn new(config: ServerConfig) -> Result<Self> {
        if config.apps.is_empty() {
            return Err(Error::config(
                "INFRA_REALTIME_APPS_FILE",
                "the realtime server needs at least one app",
            ));
        }
        Ok(RealtimeServer {
            node: Node::start(config)?,
        })
    }

    /// Waits until the node reaches its cluster's Redis (true at once for a single node);
    /// false after `wait`, the node then serves its own clients and keeps trying.
    pub async fn cluster_ready(&self, wait: Duration) -> bool {
        self.node.ready(wait).await
    }

    /// The WebSocket endpoint `/app/{key}` and the HTTP API `/apps/{id}/…` (and
    /// `/users/{id}/terminate_connections`, where the PyPI SDK posts it). Serve it with each
    /// connection's peer address (`infra_core::http_server::serve` does; with `axum::serve`,
    /// `into_make_service_with_connect_info::<SocketAddr>()`) for the per-address connection
    /// limit to apply; behind proxies, name them in
    /// [`ServerConfig::trusted_proxies`](super::ServerConfig::trusted_proxies).
    pub fn router(&self) -> Router {
        // The HTTP API's answers are counted by status class; the WebSocket endpoint's are
        // connections, counted by the hub.
        let api = Router::new()
            .route("/apps/{app_id}/events", post(http_api::events))
            .route("/apps/{app_id}/batch_events", post(http_api::batch_events))
            .route("/apps/{app_id}/channels", get(http_api::channels))
            .route("/apps/{app_id}/channels/{channel}", get(http_api::channel))
            .route(
                "/apps/{app_id}/channels/{channel}/users",
                get(http_api::users),
            )
            .route(
                "/apps/{app_id}/users/{user_id}/terminate_connections",
                post(http_api::terminate_connections),
            )
            // The PyPI SDK (3.x) posts here, without the `/apps/{app_id}` prefix; the key that
            // signed it names the app.
            .route(
                "/users/{user_id}/terminate_connections",
                post(http_api::terminate_connections_by_key),
            )
            .layer(axum::middleware::from_fn_with_state(
                self.node.clone(),
                super::server_metrics::count_api_request,
            ));
        Router::new()
            .route("/app/{key}", get(connection::upgrade))
            .merge(api)
            .with_state(self.node.clone())
    }

    /// Refreshes the server's gauges (`infra_realtime_connections`, `_channels{kind}`,
    /// `_subscriptions{kind}`, `_presence_members`, …) from the hub's state: what the metrics
    /// interval calls. Local state only, no Redis call.
    pub fn record_metrics(&self) {
        self.node
            .metrics
            .sample(self.node.counts(), self.node.hub());
    }

    /// The app `Realtime` triggers on: the first one configured.
    pub fn app(&self) -> &AppConfig {
        &self.default_app().config
    }

    fn default_app(&self) -> &Arc<AppHub> {
        &self.node.hub().apps()[0]
    }

    /// Open connections over all apps.
    pub fn connection_count(&self) -> usize {
        self.state_counts().sockets
    }

    /// Occupied channels of the first app, sorted.
    pub fn channels(&self) -> Vec<String> {
        self.default_app().channels("").into_keys().collect()
    }

    /// What the server holds over all apps (sockets, channels, presence members, users) and
    /// what waits to leave it (webhooks, changes for the cluster).
    pub fn state_counts(&self) -> StateCounts {
        self.node.counts()
    }

    /// Closes every connection with 4200 (reconnect now) and waits up to `deadline` for them
    /// to be gone; returns how many were still open. A cluster node then leaves its cluster
    /// (its state is removed from Redis at once, not when its lease runs out).
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        for app in self.node.hub().apps() {
            app.close_all(CloseCode::GoingAway);
        }
        let until = tokio::time::Instant::now() + deadline;
        while self.connection_count() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.connection_count();
        self.node.leave().await;
        left
    }
}

/// The handle publishes without a master key, so it cannot seal data for an encrypted
/// channel; refusing keeps plain text off channels clients believe are end-to-end encrypted.
/// (Events sealed by an SDK still pass through the HTTP API unchanged.)
fn refuse_encrypted<'a>(mut channels: impl Iterator<Item = &'a ChannelName>) -> Result<()> {
    match channels.find(|c| c.is_encrypted()) {
        Some(encrypted) => Err(Error::invalid_input(
            "channels",
            format_args!(
                "`{encrypted}` is an encrypted channel; the embedded server's handle does not \
                 encrypt (trigger it through an SDK with the master key)"
            ),
        )),
        None => Ok(()),
    }
}

#[async_trait]
impl Realtime for RealtimeServer {
    async fn trigger(
        &self,
        channels: &[ChannelName],
        event: &EventName,
        data: &serde_json::Value,
    ) -> Result<()> {
        refuse_encrypted(channels.iter())?;
        let encoded = check_trigger(channels, data)?;
        let app = self.default_app();
        for channel in channels {
            self.node
                .publish(app, channel.as_str(), event.as_str(), &encoded, None);
        }
        self.node.flush().await;
        Ok(())
    }

    async fn trigger_batch(&self, batch: &[BatchEvent]) -> Result<()> {
        refuse_encrypted(batch.iter().map(|e| &e.channel))?;
        let encoded = check_batch(batch)?;
        let app = self.default_app();
        for (event, data) in batch.iter().zip(encoded) {
            self.node.publish(
                app,
                event.channel.as_str(),
                event.name.as_str(),
                &data,
                None,
            );
        }
        self.node.flush().await;
        Ok(())
    }
}

#[async_trait]
impl HealthCheck for RealtimeServer {
    fn service(&self) -> &str {
        "realtime"
    }
    /// `local`, like every service's embedded default; `redis` when nodes share a Redis.
    fn backend(&self) -> &str {
        if self.node.is_clustered() {
            "redis"
        } else {
            "local"
        }
    }
    /// Takes each app's lock and counts its state: proves the hub is not wedged. A node cut
    /// off from its cluster's Redis is degraded: it still serves its own clients.
    async fn probe(&self) -> Result<Probe> {
        let counts = self.state_counts();
        let cluster = self.node.health();
        let mut detail = format!(
            "embedded Pusher server: {} app(s), {} connection(s), {} occupied channel(s); {}",
            self.node.hub().apps().len(),
            counts.sockets,
            counts.channels,
            cluster.detail
        );
        if counts.webhooks_queued > 0 || counts.webhooks_dropped > 0 {
            detail.push_str(&format!(
                "; {} webhook event(s) waiting, {} webhook events dropped since start (backlog \
                 full: a slow receiver or a flood)",
                counts.webhooks_queued, counts.webhooks_dropped
            ));
        }
        Ok(if cluster.healthy {
            Probe::healthy(detail)
        } else {
            Probe::degraded(detail)
        })
    }
}
