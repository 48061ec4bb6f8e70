//! The embedded Pusher-protocol server: WebSocket (`/app/{key}`), HTTP API (`/apps/{id}/…`)
//! and webhooks, on axum. See `docs/realtime-server.md`.

mod app;
mod connection;
mod handle;
mod http_api;
mod hub;
mod protocol;
mod webhook;

pub use app::{AppConfig, AppLimits, ServerConfig, load_apps_file};
pub use handle::RealtimeServer;
pub use hub::StateCounts;
pub use protocol::{CloseCode, MAX_PROTOCOL, MIN_PROTOCOL};
