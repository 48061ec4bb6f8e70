//! The embedded Pusher-protocol server: WebSocket (`/app/{key}`), HTTP API (`/apps/{id}/…`)
//! and webhooks, on axum. See `docs/realtime-server.md`.
//!
//! Its shape (`docs/architecture.md` draws it):
//!
//! - [`RealtimeServer`] (`realtime_server`) is the handle an app holds: the router, `Realtime`,
//!   health, counts and shutdown, over one node.
//! - The node (`node`) is one server process. It composes the hub, and on a cluster the bus and
//!   the presence store (`cluster`); a single node is a hub alone: no bus, local presence.
//! - The hub (`hub`) is this node's state only: per app, the sockets, their channels,
//!   presence members and signed-in users, each app under one lock.
//! - The bus (`bus`) carries frames to the other nodes and hands theirs to the hub; the
//!   presence store (`presence_store`) sums every node's channel state and decides the
//!   cluster-wide transitions, which it tells the node. Both run over Redis (`redis`,
//!   feature `server-redis`).
//! - Connections (`connection`) and the HTTP API (`http_api`) act through the node.
//! - Per-app features the node runs beside the hub: subscription counts
//!   (`subscription_counter`), watchlist events (`watchlist`), the cluster's store of cache
//!   channels' last events (`cache_store`), and which webhooks go out (`webhook_filter`).
//!
//! Invariants: an app's state changes only under its lock, never held across an `.await`;
//! frames reach a socket through its bounded outbox in the order the hub handed them over; a
//! clustered hub writes each membership change to the store's log under the same lock, so a
//! channel's changes reach the cluster in the order the hub made them; nothing on a
//! connection's path waits for Redis.

mod app_config;
mod app_limits;
// The cluster's contracts have no implementation in a build without `server-redis`.
#[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
mod bus;
#[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
mod cache_store;
mod client_auth;
mod client_message;
mod cluster;
mod cluster_config;
mod connection;
mod http_api;
mod hub;
mod kill_switch;
mod node;
mod outbox;
mod peer_counts;
#[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
mod presence_store;
mod protocol;
mod rate_window;
mod realtime_server;
#[cfg(feature = "server-redis")]
mod redis;
mod server_config;
mod server_metrics;
mod state_counts;
mod subscription;
mod subscription_counter;
mod watchlist;
mod webhook_backlog;
mod webhook_event;
mod webhook_filter;
mod webhook_queue;

pub use app_config::{AppConfig, load_apps_file};
pub use app_limits::AppLimits;
pub use cluster_config::{
    ClusterConfig, DEFAULT_LEASE, DEFAULT_PREFIX, REDIS_CLUSTER_NODES_VAR, REDIS_URL_VAR,
};
pub use protocol::{CloseCode, MAX_PROTOCOL, MIN_PROTOCOL};
pub use realtime_server::RealtimeServer;
pub use server_config::{
    DEFAULT_SUBSCRIPTION_COUNT_INTERVAL, DEFAULT_WEBHOOK_RETRY_FOR, DEFAULT_WRITE_TIMEOUT,
    ServerConfig,
};
pub use state_counts::StateCounts;
pub use webhook_filter::{
    WEBHOOK_CHANNEL_PREFIXES_VAR, WEBHOOK_EVENTS_VAR, WebhookFilter, WebhookKind,
};
