#![doc = include_str!("../README.md")]

mod config;
mod local_sink;
mod reporter;
pub mod scrub;
#[cfg(feature = "sentry")]
mod sentry_backend;
mod tracking;

pub use config::{DSN_VARIABLES, Dsn, MonitoringConfig, SinkTarget};
pub use local_sink::LocalSink;
pub use reporter::Monitoring;
pub use tracking::{ErrorTracking, Tracking};

#[cfg(feature = "sentry")]
pub use sentry;
#[cfg(feature = "sentry")]
pub use sentry_backend::sentry_options;
