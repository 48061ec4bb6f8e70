#![doc = include_str!("../README.md")]

mod config;
mod limits;
mod local;
#[cfg(feature = "pusher")]
mod pusher_client;
mod service;
pub mod signature;

pub use config::{PusherConfig, RealtimeConfig};
pub use limits::{MAX_BATCH_EVENTS, MAX_CHANNELS_PER_TRIGGER, MAX_DATA_BYTES};
pub use local::{LocalRealtime, RealtimeMessage};
#[cfg(feature = "pusher")]
pub use pusher_client::PusherClient;
pub use service::RealtimeService;
