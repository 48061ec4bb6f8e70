#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod compat;
mod connection_report;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod infra;
mod metrics_endpoint;
#[cfg(feature = "http")]
mod readiness;

pub use connection_report::ConnectionReport;
#[cfg(all(feature = "jobs", feature = "http"))]
pub use infra::DEFAULT_INNGEST_APP_ID;
pub use infra::{DEFAULT_READINESS_CACHE_TTL, Infra};

// What an app names: the service traits, their typed layers and arguments, the error, the
// environment, secrets and health reports. The rest of infra-core (helpers, queue
// administration, limits, the conformance suites) is under `infra::core`.
pub use infra_core::{
    BatchEvent, Breadcrumb, Cache, CacheExt, ChannelName, Context, Env, Error, ErrorKind,
    ErrorReporter, Event, EventName, EventSender, HealthCheck, HealthReport, HealthStatus, Level,
    Probe, RateLimitDecision, RateLimiter, Realtime, Result, Secret, TypedEvent, User, async_trait,
};

/// Everything of `infra-core`: the traits above and the rest — signature and HTTP helpers,
/// queue administration ([`QueueAdmin`](infra_core::QueueAdmin)), limits, `Backoff` and
/// `RetryPolicy`, the HTTP server (feature `http`) and the conformance suites (feature
/// `testkit`).
pub use infra_core as core;

/// mockall mocks of every service trait, for the app's own tests (feature `mock`).
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub use infra_core::mock;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use infra_cache as cache;
#[cfg(feature = "db")]
#[cfg_attr(docsrs, doc(cfg(feature = "db")))]
pub use infra_db as db;
#[cfg(feature = "jobs")]
#[cfg_attr(docsrs, doc(cfg(feature = "jobs")))]
pub use infra_jobs as jobs;
#[cfg(feature = "monitoring")]
#[cfg_attr(docsrs, doc(cfg(feature = "monitoring")))]
pub use infra_monitoring as monitoring;
#[cfg(feature = "realtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "realtime")))]
pub use infra_realtime as realtime;
