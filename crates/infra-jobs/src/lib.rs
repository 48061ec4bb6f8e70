#![doc = include_str!("../README.md")]

mod concurrency;
mod config;
mod context;
mod cron;
mod event_id;
mod event_key;
mod function;
mod health_probe;
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
mod service;
mod stats;
mod worker;
mod worker_settings;

pub use config::{InngestConfig, JobsConfig};
pub use context::{AppState, JobContext};
pub use cron::CronSchedule;
pub use event_key::EventKey;
pub use function::{
    Backoff, CRON_EVENT_NAME, Concurrency, Debounce, Function, FunctionBuilder, FunctionOptions,
    Idempotency, Trigger,
};
pub use infra_core::{EventLimits, TypedEvent, TypedEventSender};
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
pub use service::Jobs;
pub use stats::{FunctionStats, JobsStats, RunCounters};
pub use worker_settings::WorkerSettings;
