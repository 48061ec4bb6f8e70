#![doc = include_str!("../README.md")]

mod config;
#[cfg(feature = "sentry")]
mod envelope_probe;
mod error_tracking;
mod local_sink;
mod monitoring;
mod monitoring_metrics;
pub mod scrub;
#[cfg(feature = "sentry")]
mod sentry_backend;
#[cfg(feature = "sentry")]
mod sentry_scrub;
#[cfg(feature = "tower")]
mod tower_layer;
#[cfg(feature = "tracing")]
mod tracing_layer;
mod tracking;

pub use config::{DSN_VARIABLES, Dsn, MonitoringConfig, SinkTarget};
pub use error_tracking::ErrorTracking;
pub use local_sink::LocalSink;
pub use monitoring::Monitoring;
#[cfg(feature = "tower")]
pub use tower_layer::{CaptureServerErrors, CaptureServerErrorsLayer, request_layers};
#[cfg(feature = "tracing")]
pub use tracing_layer::tracing_layer;
pub use tracking::{Tracking, error_type};

#[cfg(feature = "sentry")]
pub use sentry;
#[cfg(feature = "sentry")]
pub use sentry_backend::sentry_options;
