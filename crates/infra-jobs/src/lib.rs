#![doc = include_str!("../README.md")]

mod config;
mod event_id;
#[cfg(feature = "inngest")]
mod inngest;
mod local;
mod service;
mod signing;

pub use config::{InngestConfig, JobsConfig};
#[cfg(feature = "inngest")]
pub use inngest::InngestClient;
pub use local::LocalEventBus;
pub use service::Jobs;
pub use signing::{
    SIGNATURE_HEADER, SIGNATURE_MAX_AGE, SIGNING_KEY_FALLBACK_VAR, SIGNING_KEY_VAR,
    SignatureHeader, SigningKey, SigningKeys,
};
