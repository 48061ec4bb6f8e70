//! `RetryPolicy`: how many attempts an operation gets and how long to wait between them.
//!
//! The one retry policy of the workspace, beside the one [`Backoff`]: a function's attempts
//! in infra-jobs and the Inngest client's sends use it. Each user keeps its own defaults
//! (a transaction retries within milliseconds, a background function within minutes), so the
//! type has no `Default`; what a caller does with a server's `Retry-After` is its own rule.

use std::time::Duration;

use crate::backoff::Backoff;

/// Attempts in all (the first included) and the back-off between them.
///
/// ```
/// use std::time::Duration;
/// use infra_core::{Backoff, RetryPolicy};
///
/// let policy = RetryPolicy::new(3, Backoff::new(Duration::from_millis(100), Duration::from_secs(1)));
/// assert_eq!(policy.retries(), 2);
/// assert!(policy.allows_another(2));
/// assert!(!policy.allows_another(3));
/// let wait = policy.delay(2); // the back-off's step before retry 2: 200ms, jittered down to 100ms at most
/// assert!(wait >= Duration::from_millis(100) && wait <= Duration::from_millis(200));
/// assert_eq!(RetryPolicy::none().max_attempts, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1: 1 never retries).
    pub max_attempts: u32,
    /// The waits between attempts.
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// `max_attempts` attempts (0 counts as 1) with `backoff` between them.
    pub const fn new(max_attempts: u32, backoff: Backoff) -> Self {
        RetryPolicy {
            max_attempts: if max_attempts == 0 { 1 } else { max_attempts },
            backoff,
        }
    }

    /// One attempt, never retried.
    pub const fn none() -> Self {
        RetryPolicy::new(
            1,
            Backoff::new(Duration::from_millis(100), Duration::from_millis(100)),
        )
    }

    /// The same waits with `retries` retries after the first attempt (Inngest counts
    /// retries, not attempts).
    pub const fn with_retries(self, retries: u32) -> Self {
        RetryPolicy::new(retries.saturating_add(1), self.backoff)
    }

    /// The same attempts with other waits.
    pub const fn with_backoff(self, backoff: Backoff) -> Self {
        RetryPolicy { backoff, ..self }
    }

    /// Retries after the first attempt: `max_attempts - 1`.
    pub const fn retries(&self) -> u32 {
        self.max_attempts.saturating_sub(1)
    }

    /// Whether another attempt may follow failed attempt number `attempt` (1-based).
    pub const fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The jittered wait after failed attempt number `attempt` (1-based), before the next.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.backoff.delay(attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_at_least_one_and_retries_count_after_the_first() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(40));
        assert_eq!(RetryPolicy::new(0, b).max_attempts, 1);
        assert_eq!(RetryPolicy::new(0, b).retries(), 0);
        let p = RetryPolicy::new(4, b);
        assert_eq!(p.with_retries(2).max_attempts, 3);
        assert_eq!(p.with_retries(u32::MAX).max_attempts, u32::MAX);
        assert!((1..4).all(|a| p.allows_another(a)));
        assert!(!p.allows_another(4));
        for attempt in 1..6 {
            let d = p.delay(attempt);
            assert!(
                d >= b.step(attempt) / 2 && d <= b.step(attempt),
                "{attempt}: {d:?}"
            );
        }
    }
}
