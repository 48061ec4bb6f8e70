#![doc = include_str!("../README.md")]

mod config;
mod limits;
#[cfg(feature = "pusher")]
mod pusher_client;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod service;
pub mod signature;

pub use config::{PusherConfig, RealtimeConfig};
pub use limits::{MAX_BATCH_EVENTS, MAX_CHANNELS_PER_TRIGGER, MAX_DATA_BYTES};
#[cfg(feature = "pusher")]
pub use pusher_client::PusherClient;
pub use service::RealtimeService;
