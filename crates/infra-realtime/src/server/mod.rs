//! The embedded Pusher-protocol server: WebSocket (`/app/{key}`), HTTP API (`/apps/{id}/…`)
//! and webhooks, on axum. See `docs/realtime-server.md`.

mod app;
mod app_limits;
mod client_auth;
mod client_message;
mod cluster;
mod cluster_config;
mod connection;
mod handle;
mod http_api;
mod hub;
mod kill_switch;
mod outbox;
mod peer_counts;
mod protocol;
mod rate_window;
#[cfg(feature = "server-redis")]
mod redis_cluster;
#[cfg(feature = "server-redis")]
mod redis_scripts;
#[cfg(feature = "server-redis")]
mod state_queue;
mod webhook;
mod webhook_backlog;

pub use app::{AppConfig, DEFAULT_WRITE_TIMEOUT, ServerConfig, load_apps_file};
pub use app_limits::AppLimits;
pub use cluster_config::{ClusterConfig, DEFAULT_LEASE, DEFAULT_PREFIX, REDIS_URL_VAR};
pub use handle::RealtimeServer;
pub use hub::StateCounts;
pub use protocol::{CloseCode, MAX_PROTOCOL, MIN_PROTOCOL};
