#![doc = include_str!("../README.md")]

#[cfg(feature = "serve")]
mod bounded_body;
mod concurrency;
mod concurrency_scope;
mod config;
mod context;
mod cron;
mod cron_scheduler;
mod event_id;
mod event_key;
mod expression;
mod flow_control;
mod function;
mod function_options;
mod health_probe;
#[cfg(feature = "serve")]
mod ingest;
#[cfg(feature = "inngest")]
mod inngest;
#[cfg(feature = "serve")]
mod inngest_call;
mod job_metrics;
mod memory_queue;
mod outcome;
#[cfg(feature = "postgres")]
mod pg_queue;
mod planning;
mod registry;
mod run_observation;
mod run_steps;
mod runtime;
mod runtime_from_env;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "serve")]
mod serve_config;
mod signing;
mod stats;
mod step;
mod step_id;
mod step_journal;
mod step_plan;
#[cfg(feature = "serve")]
mod sync_payload;
mod time_string;
mod wait_match;
mod worker;
mod worker_settings;

pub use config::{DEFAULT_INNGEST_RETRY, InngestConfig, JobsConfig};
pub use context::JobContext;
pub use cron::CronSchedule;
pub use event_key::EventKey;
pub use flow_control::{BatchEvents, KeyExpression, Ordering, RateLimit, Singleton, Throttle};
pub use function::{CRON_EVENT_NAME, Function, FunctionBuilder, Trigger};
pub use function_options::{
    Concurrency, DEFAULT_RETRY_POLICY, Debounce, FunctionOptions, Idempotency,
};
pub use health_probe::{PROBE_EVENT_NAME, PROBE_FUNCTION_ID};
pub use infra_core::{Backoff, EventLimits, RetryPolicy, SingletonMode, TypedEvent};
#[cfg(feature = "serve")]
pub use ingest::{
    DEFAULT_INGEST_MAX_BODY, INGEST_KEYS_VAR, INGEST_MAX_BODY_VAR, IngestConfig, ingest_router,
};
#[cfg(feature = "inngest")]
pub use inngest::InngestClient;
pub use memory_queue::MemoryQueue;
pub use outcome::Outcome;
#[cfg(feature = "postgres")]
pub use pg_queue::PgQueue;
pub use registry::FunctionRegistry;
pub use runtime::JobsRuntime;
#[cfg(feature = "serve")]
pub use serve::{REQ_VERSION, SDK_HEADER_VALUE, serve_router};
#[cfg(feature = "serve")]
pub use serve_config::{
    DEFAULT_SERVE_MAX_BODY, DEFAULT_SERVE_PATH, INNGEST_CLOUD_API, SERVE_MAX_BODY_VAR, ServeConfig,
    ServeMode,
};
pub use signing::{
    SIGNATURE_HEADER, SIGNATURE_MAX_AGE, SIGNING_KEY_FALLBACK_VAR, SIGNING_KEY_VAR,
    SignatureHeader, SigningKey, SigningKeys,
};
pub use stats::{FunctionStats, JobsStats, RunCounters};
pub use step::{FINISHED_EVENT_NAME, INVOKED_EVENT_NAME, Step};
pub use wait_match::{CancelOn, Match};
pub use worker_settings::WorkerSettings;
