//! The `StepStore` trait: where a queue keeps the durable steps of its runs, beside its hot
//! path ([`JobQueue`](crate::JobQueue)) and its administration ([`QueueAdmin`](crate::QueueAdmin)).
//!
//! A durable function re-runs from the top on every attempt; each step it reaches either has
//! a recorded result (returned without running it again) or is the first new one, which runs
//! and is recorded, or parks the run (a sleep, a wait for an event). The store keeps those
//! records per job; the runtime in `infra-jobs` decides everything else.
//!
//! Invariants every implementation keeps:
//! - a step is recorded, and a run parked, only while the recording worker holds the run's
//!   lease: a worker whose lease another took over writes nothing;
//! - recording a step resets the run's attempts to 1 (the next step starts its own count);
//! - a parked run holds no lease and no concurrency slot: it is a job due at its wake time
//!   (a sleep's end, a wait's timeout) with its attempts reset, whatever enqueues its park
//!   asks for are added in the same transaction, and its waits are found by an index on
//!   (event name, key) when an event arrives;
//! - a wait resumes at most once: by the first matching event (recorded as the step's
//!   output, the run due at once) or by its timeout ([`StepStore::expire_wait`]);
//! - a completed job's steps and waits leave with it.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::Result;
use crate::event::Event;
use crate::job_queue::{JobId, NewJob};

/// What the store holds for one step of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum StepState {
    /// Finished: `{"data": …}` on success, `{"error": {"name", "message"}}` when it failed
    /// for good (the shape of Inngest's memoized steps).
    Done(Value),
    /// A sleep planned to end at this time (milliseconds since the Unix epoch).
    Sleeping {
        /// The end of the sleep.
        until_ms: i64,
    },
    /// A wait for an event planned to time out at this time.
    Waiting {
        /// The wait's timeout.
        until_ms: i64,
    },
}

/// One recorded step of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStep {
    /// The run (the queue's job).
    pub job_id: JobId,
    /// The step's hashed id.
    pub step_id: String,
    /// Its state.
    pub state: StepState,
}

/// A finished step to record: its run, its hashed id and its output (see [`StepState::Done`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedStep {
    /// The run.
    pub job_id: JobId,
    /// The step's hashed id.
    pub step_id: String,
    /// `{"data": …}` or `{"error": …}`.
    pub output: Value,
}

/// An indexed key of a wait: the event it takes has `value` at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WaitKey {
    /// A dotted path into the arriving event, such as `data.userId`.
    pub path: String,
    /// The value there, as text: a string's own characters, anything else its JSON.
    pub value: String,
}

/// What a wait does when its event arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitKind {
    /// Resumes the run: the event becomes the output of this step (hashed id).
    Step(String),
    /// Cancels the run (a function's `cancel_on`).
    Cancel,
}

/// A wait for an event: its name, an indexed key when the match has one, and the rest of the
/// match as an expression on `async` (the arriving event) that the runtime checks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WaitSpec {
    /// The event's name.
    pub event: String,
    /// The indexed part of the match; `None` matches every event of that name.
    pub key: Option<WaitKey>,
    /// The rest of the match, checked by the caller of [`StepStore::deliver`].
    pub condition: Option<String>,
    /// What a match does.
    pub kind: WaitKind,
}

impl WaitSpec {
    /// A wait for `event` doing `kind`, matching every such event.
    pub fn new(event: impl Into<String>, kind: WaitKind) -> Self {
        WaitSpec {
            event: event.into(),
            key: None,
            condition: None,
            kind,
        }
    }

    /// Restricts it to events with `value` at `path`.
    pub fn with_key(mut self, path: impl Into<String>, value: impl Into<String>) -> Self {
        self.key = Some(WaitKey {
            path: path.into(),
            value: value.into(),
        });
        self
    }

    /// Restricts it to events `condition` accepts.
    pub fn with_condition(mut self, condition: impl Into<String>) -> Self {
        self.condition = Some(condition.into());
        self
    }
}

/// A run to park: its lease is given up and it becomes due at `until_ms`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ParkedRun {
    /// The run.
    pub job_id: JobId,
    /// The step that parks it (a sleep, a wait or an invocation), by hashed id.
    pub step_id: String,
    /// When it is due again: the end of the sleep or the wait's timeout.
    pub until_ms: i64,
    /// The wait, when the step waits for an event (its kind names the step).
    pub wait: Option<WaitSpec>,
    /// Waits that cancel the run while it is parked.
    pub cancel_on: Vec<WaitSpec>,
    /// Jobs to add in the same transaction (an invoked function's run).
    pub enqueue: Vec<NewJob>,
}

impl ParkedRun {
    /// A run parked by step `step_id` until `until_ms`, with no wait.
    pub fn sleeping(job_id: JobId, step_id: impl Into<String>, until_ms: i64) -> Self {
        ParkedRun {
            job_id,
            step_id: step_id.into(),
            until_ms,
            wait: None,
            cancel_on: Vec::new(),
            enqueue: Vec::new(),
        }
    }

    /// A run parked by step `step_id` waiting for `wait` until `until_ms`.
    pub fn waiting(
        job_id: JobId,
        step_id: impl Into<String>,
        until_ms: i64,
        wait: WaitSpec,
    ) -> Self {
        ParkedRun {
            wait: Some(wait),
            ..ParkedRun::sleeping(job_id, step_id, until_ms)
        }
    }

    /// Adds waits that cancel the run while it is parked.
    pub fn with_cancel_on(mut self, waits: Vec<WaitSpec>) -> Self {
        self.cancel_on = waits;
        self
    }

    /// Adds jobs enqueued with the park, all or nothing.
    pub fn with_enqueue(mut self, jobs: Vec<NewJob>) -> Self {
        self.enqueue = jobs;
        self
    }
}

/// A run an event resumed or cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The run.
    pub job_id: JobId,
    /// What the wait did.
    pub kind: WaitKind,
}

/// Checks the condition of a wait ([`WaitSpec::condition`]) against an arriving event: the
/// store indexes keys, the runtime evaluates expressions.
pub trait WaitCondition: Send + Sync {
    /// Whether `event` satisfies `condition`.
    fn accepts(&self, condition: &str, event: &Event) -> bool;
}

/// Storage of durable steps. Object safe; implemented for `Arc<T>`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StepStore: Send + Sync {
    /// Every step recorded for the runs `jobs`, finished or planned, in no particular order.
    async fn load_steps(&self, jobs: &[JobId]) -> Result<Vec<StoredStep>>;

    /// Records finished steps of runs `worker` holds (a step recorded before keeps its first
    /// output); returns, in order, whether each run was still held.
    async fn save_steps(&self, worker: &str, steps: Vec<FinishedStep>) -> Result<Vec<bool>>;

    /// Parks runs `worker` holds, giving up their leases (the attempt does not count);
    /// returns, in order, whether each run was still held.
    async fn park(&self, worker: &str, runs: Vec<ParkedRun>) -> Result<Vec<bool>>;

    /// Ends the wait of step `step_id` of run `job` whose timeout passed: a step no event
    /// resumed is recorded as `{"data": null}`. Returns the step's output, `None` if the
    /// step is not a wait of that run.
    async fn expire_wait(&self, job: JobId, step_id: &str) -> Result<Option<Value>>;

    /// Offers `events` to the waiting runs: each wait whose name and key match, and whose
    /// condition `check` accepts, takes the first such event and resumes (or cancels) its run.
    async fn deliver(
        &self,
        events: &[Event],
        check: Arc<dyn WaitCondition>,
    ) -> Result<Vec<Resumed>>;

    /// Of `worker`'s running jobs `jobs`, those whose cancellation was asked for.
    async fn cancel_requested(&self, worker: &str, jobs: &[JobId]) -> Result<Vec<JobId>>;
}

#[async_trait]
impl<T: StepStore + ?Sized> StepStore for Arc<T> {
    async fn load_steps(&self, jobs: &[JobId]) -> Result<Vec<StoredStep>> {
        (**self).load_steps(jobs).await
    }
    async fn save_steps(&self, worker: &str, steps: Vec<FinishedStep>) -> Result<Vec<bool>> {
        (**self).save_steps(worker, steps).await
    }
    async fn park(&self, worker: &str, runs: Vec<ParkedRun>) -> Result<Vec<bool>> {
        (**self).park(worker, runs).await
    }
    async fn expire_wait(&self, job: JobId, step_id: &str) -> Result<Option<Value>> {
        (**self).expire_wait(job, step_id).await
    }
    async fn deliver(
        &self,
        events: &[Event],
        check: Arc<dyn WaitCondition>,
    ) -> Result<Vec<Resumed>> {
        (**self).deliver(events, check).await
    }
    async fn cancel_requested(&self, worker: &str, jobs: &[JobId]) -> Result<Vec<JobId>> {
        (**self).cancel_requested(worker, jobs).await
    }
}
