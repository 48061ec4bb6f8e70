//! When and how long to wait before retrying a failed API call.
//!
//! Server errors (5xx), rate limits (429) and transport failures are retried; every other
//! reply is final. Waits follow infra-core's [`Backoff`] (exponential, "equal jitter", so
//! clients that failed together do not retry together), and a 429's `Retry-After` is a floor.
//! The caller stops when the next wait would end past the call's deadline.

use std::time::Duration;

use infra_core::{Backoff, MAX_RETRY_AFTER};

/// How a failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The waits between attempts, before `Retry-After`.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    /// 4 attempts, waits from 100 ms doubling up to 2 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
        }
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts (at least 1) with the default waits.
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..RetryPolicy::default()
        }
    }

    /// Never retries.
    pub fn none() -> Self {
        RetryPolicy::attempts(1)
    }

    /// Sets the first step and the largest step of the waits.
    pub fn with_delays(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(base, max.max(base));
        self
    }

    /// The wait after failed attempt number `attempt` (1-based), with random jitter, at
    /// least `retry_after` when the server asked for it — cut to [`MAX_RETRY_AFTER`], as
    /// [`parse_retry_after`](infra_core::parse_retry_after) cuts what it reads.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff.delay(attempt);
        retry_after.map_or(backoff, |floor| backoff.max(floor.min(MAX_RETRY_AFTER)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_within_the_backoff_step() {
        let p = RetryPolicy::default();
        for attempt in 1..8 {
            let d = p.delay(attempt, None);
            let step = p.backoff.step(attempt);
            assert!(d >= step / 2 && d <= step, "{attempt}: {d:?}");
        }
        assert_eq!(p.backoff.step(10), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(RetryPolicy::attempts(0).max_attempts, 1);
        assert_eq!(p.delay(1, Some(Duration::MAX)), MAX_RETRY_AFTER);
    }
}
