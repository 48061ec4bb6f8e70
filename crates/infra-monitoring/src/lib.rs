#![doc = include_str!("../README.md")]

mod check_in;
mod config;
#[cfg(feature = "sentry")]
mod envelope_probe;
mod error_tracking;
#[cfg(feature = "tower")]
mod local_request_spans;
mod local_sink;
mod local_trace;
mod monitoring;
mod monitoring_metrics;
#[cfg(feature = "otel")]
mod otel;
mod run_monitor;
pub mod scrub;
#[cfg(feature = "sentry")]
mod sentry_backend;
#[cfg(feature = "sentry")]
mod sentry_runs;
#[cfg(feature = "sentry")]
mod sentry_scrub;
#[cfg(feature = "tower")]
mod tower_layer;
#[cfg(feature = "tracing")]
mod tracing_layer;
mod tracking;

pub use config::{DSN_VARIABLES, Dsn, MonitoringConfig, SinkTarget};
pub use error_tracking::ErrorTracking;
#[cfg(feature = "tower")]
pub use local_request_spans::{LocalRequestSpans, LocalRequestSpansLayer};
pub use local_sink::LocalSink;
pub use monitoring::Monitoring;
#[cfg(feature = "otel")]
pub use otel::{
    DEFAULT_OTEL_SERVICE_NAME, OTEL_ENDPOINT_VAR, OTEL_SERVICE_NAME_VAR, OtelGuard, otel_layer,
};
#[cfg(feature = "tower")]
pub use tower_layer::{CaptureServerErrors, CaptureServerErrorsLayer, request_layers};
#[cfg(feature = "tracing")]
pub use tracing_layer::tracing_layer;
pub use tracking::{Tracking, error_type};

#[cfg(feature = "sentry")]
pub use sentry;
#[cfg(feature = "sentry")]
pub use sentry_backend::sentry_options;
