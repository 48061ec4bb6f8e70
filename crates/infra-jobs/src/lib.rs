#![doc = include_str!("../README.md")]

mod config;
mod event_id;
#[cfg(feature = "inngest")]
mod inngest;
mod local;
mod service;

pub use config::{InngestConfig, JobsConfig};
#[cfg(feature = "inngest")]
pub use inngest::InngestClient;
pub use local::LocalEventBus;
pub use service::Jobs;
