//! The in-process handle: the router to mount, `Realtime` without HTTP, counts and shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use infra_core::{BatchEvent, ChannelName, Error, EventName, HealthCheck, Probe, Realtime, Result};
use serde::Deserialize;

use super::app::{AppConfig, ServerConfig};
use super::cluster::{ClusterAdapter, SingleNode};
use super::connection;
use super::http_api;
use super::hub::{AppHub, Hub, StateCounts};
use super::protocol::CloseCode;
use crate::limits::{check_batch, check_trigger};

/// Bytes tungstenite reads at a time; small, because an idle connection keeps this buffer.
const READ_BUFFER_BYTES: usize = 4096;

/// A Pusher-protocol server living in this process.
///
/// Mount [`RealtimeServer::router`] on the app's axum server (or run the
/// `infra-realtime-server` binary); trigger through the [`Realtime`] trait, which publishes
/// straight to the connected sockets of the first app, without HTTP.
#[derive(Clone)]
pub struct RealtimeServer {
    hub: Arc<Hub>,
}

impl std::fmt::Debug for RealtimeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeServer")
            .field("apps", &self.hub.apps().len())
            .field("connections", &self.connection_count())
            .finish()
    }
}

#[derive(Deserialize)]
struct ConnectParams {
    protocol: Option<String>,
}

/// The client's address, when the server was started with axum's
/// `into_make_service_with_connect_info::<SocketAddr>()`.
struct PeerAddress(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

async fn upgrade(
    State(hub): State<Arc<Hub>>,
    Path(key): Path<String>,
    Query(params): Query<ConnectParams>,
    PeerAddress(peer): PeerAddress,
    ws: WebSocketUpgrade,
) -> Response {
    // tungstenite refuses frames beyond this itself; the connection checks the app's own,
    // smaller limit and answers with the protocol's error.
    let max_message = hub.by_key(&key).map_or(64 * 1024, |app| {
        4 * app.config.limits.max_payload_bytes + 64 * 1024
    });
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| connection::serve(hub, key, params.protocol, peer, socket))
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
        let cluster = cluster_adapter(&config)?;
        let hub = Arc::new(Hub::new(config, cluster.clone()));
        cluster.start(Arc::downgrade(&hub))?;
        Ok(RealtimeServer { hub })
    }

    /// Waits until the node reaches its cluster's Redis (true at once for a single node);
    /// false after `wait`, the node then serves its own clients and keeps trying.
    pub async fn cluster_ready(&self, wait: Duration) -> bool {
        self.hub.cluster().ready(wait).await
    }

    /// The WebSocket endpoint `/app/{key}` and the HTTP API `/apps/{id}/…` (and
    /// `/users/{id}/terminate_connections`, where the PyPI SDK posts it). Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` for the per-address connection
    /// limit to apply.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/app/{key}", get(upgrade))
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
            .with_state(self.hub.clone())
    }

    /// The app `Realtime` triggers on: the first one configured.
    pub fn app(&self) -> &AppConfig {
        &self.default_app().config
    }

    fn default_app(&self) -> &Arc<AppHub> {
        &self.hub.apps()[0]
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
        self.hub.apps().iter().map(|app| app.counts()).fold(
            StateCounts {
                cluster_changes_queued: self.hub.cluster().queued_changes(),
                ..StateCounts::default()
            },
            |a, b| StateCounts {
                sockets: a.sockets + b.sockets,
                channels: a.channels + b.channels,
                members: a.members + b.members,
                users: a.users + b.users,
                webhooks_queued: a.webhooks_queued + b.webhooks_queued,
                webhooks_dropped: a.webhooks_dropped + b.webhooks_dropped,
                cluster_changes_queued: a.cluster_changes_queued,
            },
        )
    }

    /// Closes every connection with 4200 (reconnect now) and waits up to `deadline` for them
    /// to be gone; returns how many were still open. A cluster node then leaves its cluster
    /// (its state is removed from Redis at once, not when its lease runs out).
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        for app in self.hub.apps() {
            app.close_all(CloseCode::GoingAway);
        }
        let until = tokio::time::Instant::now() + deadline;
        while self.connection_count() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.connection_count();
        self.hub.cluster().leave().await;
        left
    }
}

/// The adapter the configuration asks for: Redis when a cluster is configured.
fn cluster_adapter(config: &ServerConfig) -> Result<Arc<dyn ClusterAdapter>> {
    let Some(cluster) = &config.cluster else {
        return Ok(Arc::new(SingleNode));
    };
    #[cfg(feature = "server-redis")]
    {
        let ids = config.apps.iter().map(|a| a.id.as_str());
        Ok(Arc::new(super::redis_cluster::RedisCluster::new(
            cluster.clone(),
            ids,
        )?))
    }
    #[cfg(not(feature = "server-redis"))]
    {
        let _ = cluster;
        Err(Error::config(
            super::cluster_config::REDIS_URL_VAR,
            "is set but infra-realtime was built without its `server-redis` feature",
        ))
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
        for channel in channels {
            self.default_app()
                .publish(channel.as_str(), event.as_str(), &encoded, None);
        }
        self.default_app().flush_relays().await;
        Ok(())
    }

    async fn trigger_batch(&self, batch: &[BatchEvent]) -> Result<()> {
        refuse_encrypted(batch.iter().map(|e| &e.channel))?;
        let encoded = check_batch(batch)?;
        for (event, data) in batch.iter().zip(encoded) {
            self.default_app()
                .publish(event.channel.as_str(), event.name.as_str(), &data, None);
        }
        self.default_app().flush_relays().await;
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
        if self.hub.cluster().is_shared() {
            "redis"
        } else {
            "local"
        }
    }
    /// Takes each app's lock and counts its state: proves the hub is not wedged. A node cut
    /// off from its cluster's Redis is degraded: it still serves its own clients.
    async fn probe(&self) -> Result<Probe> {
        let counts = self.state_counts();
        let cluster = self.hub.cluster().health();
        let mut detail = format!(
            "embedded Pusher server: {} app(s), {} connection(s), {} occupied channel(s); {}",
            self.hub.apps().len(),
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
