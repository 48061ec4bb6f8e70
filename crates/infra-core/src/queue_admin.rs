//! The `QueueAdmin` trait: what operators and their tools (`cargo xtask jobs`, an admin
//! console) do with a job queue beside the workers' hot path — count jobs, list dead letters,
//! replay them.
//!
//! It is a capability of its own rather than more methods of [`JobQueue`](crate::JobQueue):
//! workers depend on the hot path only, and a tool depends on administration only. Calls
//! select jobs with a [`JobFilter`], which is `#[non_exhaustive]` so new criteria (status,
//! time range) arrive without changing a signature.
//!
//! Invariants every implementation keeps:
//! - administration never touches a job leased to a worker: only dead letters are replayed;
//! - a replayed job is due at once with its attempts reset, as if newly enqueued, and keeps
//!   its id.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::event::Event;
use crate::job_queue::JobId;

/// A job that failed for good, kept for inspection and replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The queue's id (pass it to [`QueueAdmin::replay`]).
    pub id: JobId,
    /// The function that failed.
    pub function_id: String,
    /// The event it failed on.
    pub event: Event,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was given up, in milliseconds since the Unix epoch.
    pub failed_at_ms: i64,
}

/// The queue's state for one function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FunctionQueueStats {
    /// The function.
    pub function_id: String,
    /// Due and not claimed.
    pub ready: u64,
    /// Due later (delayed, debounced, waiting for a retry).
    pub scheduled: u64,
    /// Claimed under a live lease.
    pub running: u64,
    /// Dead letters.
    pub dead: u64,
    /// How long the oldest due job has waited, in milliseconds.
    pub oldest_ready_age_ms: Option<u64>,
    /// Events its rate limit dropped (since the queue's store was made).
    pub rate_limited: u64,
}

impl FunctionQueueStats {
    /// Empty stats for `function_id`.
    pub fn new(function_id: impl Into<String>) -> Self {
        FunctionQueueStats {
            function_id: function_id.into(),
            ..Default::default()
        }
    }
}

/// Which jobs an administrative call reads or acts on; the default selects every job.
///
/// ```
/// use infra_core::JobFilter;
///
/// assert!(JobFilter::all().matches_function("remind-overdue"));
/// let one = JobFilter::function("remind-overdue");
/// assert!(one.matches_function("remind-overdue"));
/// assert!(!one.matches_function("send-email"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobFilter {
    /// Only jobs of this function.
    pub function_id: Option<String>,
}

impl JobFilter {
    /// Every job.
    pub fn all() -> Self {
        JobFilter::default()
    }

    /// The jobs of `function_id`.
    pub fn function(function_id: impl Into<String>) -> Self {
        JobFilter {
            function_id: Some(function_id.into()),
        }
    }

    /// Whether a job of `function_id` passes the function criterion.
    pub fn matches_function(&self, function_id: &str) -> bool {
        self.function_id.as_deref().is_none_or(|f| f == function_id)
    }
}

/// Administration of a job queue: counts, dead letters, replay. Object safe; implemented for
/// `Arc<T>`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait QueueAdmin: Send + Sync {
    /// Per-function counts, by function id. A queue whose store does not exist yet is empty.
    async fn stats(&self) -> Result<Vec<FunctionQueueStats>>;

    /// The dead letters `filter` selects, newest first, at most `limit`.
    async fn dead_letters(&self, filter: &JobFilter, limit: usize) -> Result<Vec<DeadLetter>>;

    /// Puts the dead letter `id` back in the queue, due now, with its attempts reset. An id
    /// that names no dead letter is a `NotFound` error.
    async fn replay(&self, id: JobId) -> Result<()>;

    /// Puts every dead letter `filter` selects back, as [`QueueAdmin::replay`] does, in one
    /// step; returns how many.
    async fn replay_all(&self, filter: &JobFilter) -> Result<u64>;
}

#[async_trait]
impl<T: QueueAdmin + ?Sized> QueueAdmin for Arc<T> {
    async fn stats(&self) -> Result<Vec<FunctionQueueStats>> {
        (**self).stats().await
    }
    async fn dead_letters(&self, filter: &JobFilter, limit: usize) -> Result<Vec<DeadLetter>> {
        (**self).dead_letters(filter, limit).await
    }
    async fn replay(&self, id: JobId) -> Result<()> {
        (**self).replay(id).await
    }
    async fn replay_all(&self, filter: &JobFilter) -> Result<u64> {
        (**self).replay_all(filter).await
    }
}
