//! How a function runs: retries, timeout, priority, concurrency limits, idempotency and
//! debounce, as its builder set them.

use std::time::Duration;

use infra_core::{Backoff, RetryPolicy};

use crate::event_key::EventKey;
use crate::flow_control::{BatchEvents, Ordering, RateLimit, Singleton, Throttle};
use crate::wait_match::CancelOn;

/// The attempts of a function unless it sets its own: 4 (3 retries, as Inngest's default),
/// 1 s doubling up to 10 minutes between them, equal jitter.
pub const DEFAULT_RETRY_POLICY: RetryPolicy = RetryPolicy::new(
    4,
    Backoff::new(Duration::from_secs(1), Duration::from_secs(10 * 60)),
);

/// At most `limit` runs at once, in all or per key.
#[derive(Debug, Clone, PartialEq)]
pub struct Concurrency {
    /// Runs at once.
    pub limit: u32,
    /// Counted per value of this key (such as `event.data.userId`), else over all runs.
    pub key: Option<EventKey>,
}

/// Duplicate events (same key) inside `window` run once.
#[derive(Debug, Clone, PartialEq)]
pub struct Idempotency {
    /// The key computed from the event.
    pub key: EventKey,
    /// How long a key suppresses duplicates.
    pub window: Duration,
}

/// Waits `period` after the last event (per key) before running, with that last event.
#[derive(Debug, Clone, PartialEq)]
pub struct Debounce {
    /// The quiet period.
    pub period: Duration,
    /// Debounced per value of this key, else over all events.
    pub key: Option<EventKey>,
    /// The longest a run is pushed back from its key's first event (Inngest's `timeout`).
    pub max_wait: Option<Duration>,
}

/// How a function runs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FunctionOptions {
    /// Attempts and the back-off between them (default [`DEFAULT_RETRY_POLICY`]).
    pub retry: RetryPolicy,
    /// Deadline of one attempt (default 5 minutes); passing it is a retryable failure.
    pub timeout: Duration,
    /// Higher runs first among ready runs (default 0).
    pub priority: i32,
    /// Concurrency limits, all of which apply (such as 20 in all and 1 per user).
    pub concurrency: Vec<Concurrency>,
    /// Deduplication of events.
    pub idempotency: Option<Idempotency>,
    /// Debounce.
    pub debounce: Option<Debounce>,
    /// Events that cancel the function's sleeping and waiting runs.
    pub cancel_on: Vec<CancelOn>,
    /// Start times limited per key.
    pub throttle: Option<Throttle>,
    /// Runs limited per key; excess dropped.
    pub rate_limit: Option<RateLimit>,
    /// Events gathered into one run.
    pub batch_events: Option<BatchEvents>,
    /// One run at a time per key.
    pub singleton: Option<Singleton>,
    /// Runs of one key one after another.
    pub ordering: Option<Ordering>,
}

impl Default for FunctionOptions {
    fn default() -> Self {
        FunctionOptions {
            retry: DEFAULT_RETRY_POLICY,
            timeout: Duration::from_secs(5 * 60),
            priority: 0,
            concurrency: Vec::new(),
            idempotency: None,
            debounce: None,
            cancel_on: Vec::new(),
            throttle: None,
            rate_limit: None,
            batch_events: None,
            singleton: None,
            ordering: None,
        }
    }
}

impl FunctionOptions {
    /// Attempts in all: the retry policy's `max_attempts`.
    pub fn max_attempts(&self) -> u32 {
        self.retry.max_attempts
    }
}
