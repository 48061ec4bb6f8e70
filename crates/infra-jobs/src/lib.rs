#![doc = include_str!("../README.md")]

#[cfg(feature = "serve")]
mod bounded_body;
mod concurrency;
mod concurrency_scope;
mod config;
mod context;
mod cron;
mod event_id;
mod event_key;
mod function;
mod health_probe;
#[cfg(feature = "serve")]
mod ingest;
#[cfg(feature = "inngest")]
mod inngest;
mod local;
mod memory_queue;
mod outcome;
#[cfg(feature = "postgres")]
mod pg_queue;
mod registry;
mod runtime;
mod seed_events;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "serve")]
mod serve_config;
mod service;
mod signing;
mod stats;
#[cfg(feature = "serve")]
mod sync_payload;
mod worker;
mod worker_settings;

pub use config::{InngestConfig, JobsConfig};
pub use context::{AppState, JobContext};
pub use cron::CronSchedule;
pub use event_key::EventKey;
pub use function::{
    CRON_EVENT_NAME, Concurrency, DEFAULT_BACKOFF, Debounce, Function, FunctionBuilder,
    FunctionOptions, Idempotency, Trigger,
};
pub use infra_core::{Backoff, EventLimits, TypedEvent, TypedEventSender};
#[cfg(feature = "serve")]
pub use ingest::{
    DEFAULT_INGEST_MAX_BODY, INGEST_KEYS_VAR, INGEST_MAX_BODY_VAR, IngestConfig, ingest_router,
};
#[cfg(feature = "inngest")]
pub use inngest::InngestClient;
pub use local::LocalEventBus;
pub use memory_queue::MemoryQueue;
pub use outcome::Outcome;
#[cfg(feature = "postgres")]
pub use pg_queue::PgQueue;
pub use registry::FunctionRegistry;
pub use runtime::{JobsRuntime, PROBE_EVENT_NAME, PROBE_FUNCTION_ID};
pub use seed_events::{
    CalendarSyncRequested, EmailSendRequested, schedule_calendar_sync, send_email,
};
#[cfg(feature = "serve")]
pub use serve::{REQ_VERSION, SDK_HEADER_VALUE, serve_router};
#[cfg(feature = "serve")]
pub use serve_config::{
    DEFAULT_SERVE_MAX_BODY, DEFAULT_SERVE_PATH, INNGEST_CLOUD_API, SERVE_MAX_BODY_VAR, ServeConfig,
    ServeMode,
};
pub use service::Jobs;
pub use signing::{
    SIGNATURE_HEADER, SIGNATURE_MAX_AGE, SIGNING_KEY_FALLBACK_VAR, SIGNING_KEY_VAR,
    SignatureHeader, SigningKey, SigningKeys,
};
pub use stats::{FunctionStats, JobsStats, RunCounters};
pub use worker_settings::WorkerSettings;
