//! The `JobQueue` trait: the hot path of a job queue — jobs are enqueued, claimed under a
//! lease, kept alive by heartbeats and settled.
//!
//! A queue stores *jobs* (one function to run on one event) and knows nothing of handlers;
//! the runtime in `infra-jobs` claims jobs, runs them and reports back. Inspection and repair
//! (dead letters, replay, counts) are a separate capability, [`QueueAdmin`](crate::QueueAdmin),
//! so the workers' dependency stays this small trait. Every queue (the in-process one, the
//! PostgreSQL one) passes `testkit::jobs`.
//!
//! Invariants every implementation keeps:
//! - a job is leased to at most one worker at a time; a lease that runs out makes the job
//!   due again (delivery is at least once);
//! - a settlement applies only while the settling worker still holds the lease;
//! - an enqueue call is all or nothing, its results in the order of its jobs.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::event::Event;
use crate::job_concurrency::ConcurrencySlot;
use crate::job_flow::{JobBatch, JobRateLimit, JobSingleton, JobThrottle};
use async_trait::async_trait;

/// A queue's id for a job.
pub type JobId = i64;

/// A job to enqueue: run `function_id` on `event`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewJob {
    /// The function to run.
    pub function_id: String,
    /// The event it runs on (with its id and timestamp set).
    pub event: Event,
    /// Not before this time, in milliseconds since the Unix epoch.
    pub run_at_ms: i64,
    /// Higher runs first among ready jobs.
    pub priority: i32,
    /// Attempts before the job becomes a dead letter (at least 1).
    pub max_attempts: u32,
    /// Jobs of one function with the same key inside `idempotency_window` run once: later
    /// ones are dropped at enqueue.
    pub idempotency_key: Option<String>,
    /// How long an idempotency key suppresses duplicates.
    pub idempotency_window: Duration,
    /// While a job of the same function with the same key waits, a new one replaces its
    /// event and `run_at_ms` instead of adding a job (debounce).
    pub debounce_key: Option<String>,
    /// The key the runtime's concurrency limit counts by.
    pub concurrency_key: Option<String>,
    /// The concurrency limits the job counts against (none: unlimited). A queue shared by
    /// several processes may enforce them at claim time; the runtime enforces them per
    /// process in any case.
    pub concurrency: Vec<ConcurrencySlot>,
    /// With [`NewJob::debounce_key`]: the latest the debounced job may be pushed to, in
    /// milliseconds since the Unix epoch (a debounce's maximum wait), kept from the first
    /// event of the key.
    pub debounce_deadline_ms: Option<i64>,
    /// Start times limited per key; excess runs wait.
    pub throttle: Option<JobThrottle>,
    /// Runs limited per key; excess runs are dropped at enqueue (reported as
    /// [`Enqueued::Duplicate`]) and counted.
    pub rate_limit: Option<JobRateLimit>,
    /// One run at a time per key.
    pub singleton: Option<JobSingleton>,
    /// Runs with the same ordering key start one after another, in enqueue order: a job is
    /// not claimed while an earlier one of its function and key is live (not a dead letter).
    pub ordering_key: Option<String>,
    /// Events of the key gathered into one run.
    pub batch: Option<JobBatch>,
}

impl NewJob {
    /// A job for `function_id` on `event`, ready now, one attempt, no keys.
    pub fn new(function_id: impl Into<String>, event: Event, run_at_ms: i64) -> Self {
        NewJob {
            function_id: function_id.into(),
            event,
            run_at_ms,
            priority: 0,
            max_attempts: 1,
            idempotency_key: None,
            idempotency_window: Duration::from_secs(24 * 3600),
            debounce_key: None,
            concurrency_key: None,
            concurrency: Vec::new(),
            debounce_deadline_ms: None,
            throttle: None,
            rate_limit: None,
            singleton: None,
            ordering_key: None,
            batch: None,
        }
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the attempts before dead-lettering.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the idempotency key and its window.
    pub fn with_idempotency(mut self, key: impl Into<String>, window: Duration) -> Self {
        self.idempotency_key = Some(key.into());
        self.idempotency_window = window;
        self
    }

    /// Sets the debounce key.
    pub fn with_debounce_key(mut self, key: impl Into<String>) -> Self {
        self.debounce_key = Some(key.into());
        self
    }

    /// Sets the concurrency key.
    pub fn with_concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    /// Adds a concurrency limit the job counts against; a second slot with the same scope
    /// keeps the lower limit (one job never takes two places in one scope).
    pub fn with_concurrency_slot(mut self, slot: ConcurrencySlot) -> Self {
        match self.concurrency.iter_mut().find(|s| s.scope == slot.scope) {
            Some(existing) => existing.limit = existing.limit.min(slot.limit),
            None => self.concurrency.push(slot),
        }
        self
    }
}

/// What happened to one job of an enqueue call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job.
    Added(JobId),
    /// Dropped: its idempotency key ran or waits inside the window.
    Duplicate,
    /// Merged into the waiting job with the same debounce key.
    Debounced(JobId),
}

/// A job claimed by a worker, leased until it settles or the lease runs out.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The queue's id.
    pub id: JobId,
    /// The function to run.
    pub function_id: String,
    /// The event.
    pub event: Event,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// The priority it was enqueued with.
    pub priority: i32,
    /// The concurrency key, if any.
    pub concurrency_key: Option<String>,
    /// When it was enqueued, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: i64,
    /// When it became (or becomes) due, in milliseconds since the Unix epoch.
    pub run_at_ms: i64,
}

/// How a claimed job settles.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Done: the job leaves the queue.
    Completed,
    /// Run again at `run_at_ms` (the attempt counts).
    Retry {
        /// When, in milliseconds since the Unix epoch.
        run_at_ms: i64,
        /// Why the attempt failed.
        error: String,
    },
    /// Give up: the job becomes a dead letter.
    Dead {
        /// Why.
        error: String,
    },
    /// Put back untouched (the attempt does not count): the worker could not start it.
    Release {
        /// When it may be claimed again, in milliseconds since the Unix epoch.
        run_at_ms: i64,
    },
}

/// The hot path of a job queue: stores jobs durably or not and claims them under leases.
/// Object safe; implemented for `Arc<T>`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// `memory`, `postgres`, …
    fn backend(&self) -> &'static str;

    /// Prepares the store (creates or migrates its tables); the runtime calls it on start.
    async fn prepare(&self) -> Result<()> {
        Ok(())
    }

    /// Adds jobs, all or none, in order; one result per job.
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>>;

    /// Claims up to `limit` due jobs for `worker`, highest priority then earliest due first,
    /// leased for `lease`. A job whose lease ran out is due again.
    ///
    /// A queue shared by several processes may also honour the jobs'
    /// [`NewJob::concurrency`] slots here, claiming a job only while every one of its scopes
    /// has fewer running jobs than its limit; jobs it holds back stay due.
    async fn claim(&self, worker: &str, limit: usize, lease: Duration) -> Result<Vec<ClaimedJob>>;

    /// Extends the lease of `worker`'s jobs `ids` to `lease` from now.
    async fn heartbeat(&self, worker: &str, ids: &[JobId], lease: Duration) -> Result<()>;

    /// Settles `worker`'s jobs; a job whose lease another worker took over is left alone.
    async fn settle(&self, worker: &str, settled: Vec<(JobId, Settlement)>) -> Result<()>;

    /// Returns when new work may be due, or after `max_wait`.
    async fn wait_for_work(&self, max_wait: Duration);
}

#[async_trait]
impl<T: JobQueue + ?Sized> JobQueue for Arc<T> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    async fn prepare(&self) -> Result<()> {
        (**self).prepare().await
    }
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        (**self).enqueue(jobs).await
    }
    async fn claim(&self, worker: &str, limit: usize, lease: Duration) -> Result<Vec<ClaimedJob>> {
        (**self).claim(worker, limit, lease).await
    }
    async fn heartbeat(&self, worker: &str, ids: &[JobId], lease: Duration) -> Result<()> {
        (**self).heartbeat(worker, ids, lease).await
    }
    async fn settle(&self, worker: &str, settled: Vec<(JobId, Settlement)>) -> Result<()> {
        (**self).settle(worker, settled).await
    }
    async fn wait_for_work(&self, max_wait: Duration) {
        (**self).wait_for_work(max_wait).await
    }
}
