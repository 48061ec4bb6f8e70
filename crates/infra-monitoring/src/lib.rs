#![doc = include_str!("../README.md")]

mod config;
mod local_sink;
mod reporter;
pub mod scrub;
#[cfg(feature = "sentry")]
mod sentry_backend;

pub use config::{DSN_VARIABLES, Dsn, MonitoringConfig, SinkTarget};
pub use local_sink::LocalSink;
pub use reporter::Monitoring;

#[cfg(feature = "sentry")]
pub use sentry;
