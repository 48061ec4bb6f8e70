#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod cache;
mod duration;
mod env;
mod error;
mod error_reporter;
mod event;
mod event_limits;
mod health;
#[cfg(feature = "http-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-server")))]
pub mod http_server;
mod http_status;
mod job_backend;
mod job_concurrency;
mod job_flow;
mod job_queue;
mod metrics_config;
#[cfg(feature = "metrics-exporter")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics-exporter")))]
pub mod metrics_exporter;
mod process_metrics;
mod queue_admin;
mod rate_limit;
mod realtime;
mod retry_policy;
mod run_monitor;
mod secret;
mod signature;
mod step_store;
mod trace_context;
mod typed_event;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

/// mockall mocks of every service trait, for your own tests.
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock {
    pub use crate::cache::MockCache;
    pub use crate::error_reporter::MockErrorReporter;
    pub use crate::event::MockEventSender;
    pub use crate::job_queue::MockJobQueue;
    pub use crate::queue_admin::MockQueueAdmin;
    pub use crate::rate_limit::MockRateLimiter;
    pub use crate::realtime::MockRealtime;
    pub use crate::step_store::MockStepStore;
}

pub use async_trait::async_trait;
pub use backoff::Backoff;
pub use cache::{Cache, CacheExt, CacheLimits, decode_json, encode_json};
pub use duration::{format_duration, parse_duration};
pub use env::{Env, parse_url};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use error_reporter::{Breadcrumb, Context, DynError, ErrorReporter, Level, User};
pub use event::{Event, EventSender};
pub use event_limits::EventLimits;
pub use health::{DEFAULT_HEALTH_DEADLINE, HealthCheck, HealthReport, HealthStatus, Probe};
pub use http_status::{
    MAX_RETRY_AFTER, http_status_error, parse_retry_after, parse_retry_after_at,
};
pub use job_backend::JobBackend;
pub use job_concurrency::ConcurrencySlot;
pub use job_flow::{JobBatch, JobRateLimit, JobSingleton, JobThrottle, SingletonMode};
pub use job_queue::{ClaimedJob, Enqueued, JobId, JobQueue, NewJob, Settlement};
pub use metrics_config::{
    DEFAULT_METRICS_INTERVAL, METRICS_ADDR_VAR, METRICS_INTERVAL_VAR, MetricsConfig,
};
pub use process_metrics::ProcessMetrics;
pub use queue_admin::{DeadLetter, FunctionQueueStats, JobFilter, QueueAdmin};
pub use rate_limit::{RateLimitDecision, RateLimiter, check_rate_limit_args};
pub use realtime::{
    BatchEvent, ChannelName, EventName, MAX_CHANNEL_NAME_LEN, MAX_EVENT_NAME_LEN, Realtime,
};
pub use retry_policy::RetryPolicy;
pub use run_monitor::{
    CheckInStatus, CronCheckIn, RunFuture, RunMonitor, RunSpan, RunStart, RunStatus,
};
pub use secret::{Secret, redact_url};
pub use signature::{constant_time_eq, hmac_sha256_hex, sha256_hex, verify_hmac_sha256_hex};
pub use step_store::{
    FinishedStep, ParkedRun, Resumed, StepState, StepStore, StoredStep, WaitCondition, WaitKey,
    WaitKind, WaitSpec,
};
pub use trace_context::TraceContext;
pub use typed_event::TypedEvent;

/// Serializes a `Duration` as fractional milliseconds (for JSON reports).
pub(crate) fn serde_millis<S: serde::Serializer>(
    d: &std::time::Duration,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1_000_000.0).round() / 1000.0)
}
