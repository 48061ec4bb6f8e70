#![doc = include_str!("../README.md")]

mod config;
mod event_id;
#[cfg(feature = "serve")]
mod ingest;
#[cfg(feature = "inngest")]
mod inngest;
mod local;
mod service;
mod signing;

pub use config::{InngestConfig, JobsConfig};
#[cfg(feature = "serve")]
pub use ingest::{
    DEFAULT_INGEST_MAX_BODY, INGEST_KEYS_VAR, INGEST_MAX_BODY_VAR, IngestConfig, ingest_router,
};
#[cfg(feature = "inngest")]
pub use inngest::InngestClient;
pub use local::LocalEventBus;
pub use service::Jobs;
pub use signing::{
    SIGNATURE_HEADER, SIGNATURE_MAX_AGE, SIGNING_KEY_FALLBACK_VAR, SIGNING_KEY_VAR,
    SignatureHeader, SigningKey, SigningKeys,
};
