//! When and how long to wait before retrying a failed API call.
//!
//! Server errors (5xx), rate limits (429) and transport failures are retried; every other
//! reply is final. Waits grow exponentially with "equal jitter" (half fixed, half random), so
//! clients that failed together do not retry together, and a 429's `Retry-After` is a floor.
//! The caller stops when the next wait would end past the call's deadline.

use std::time::Duration;

use rand::Rng;

/// How a failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The wait before the first retry, before jitter.
    pub base_delay: Duration,
    /// The longest wait between attempts, before `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, waits from 100 ms doubling up to 2 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` attempts with the default waits.
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

    /// Sets the first wait and the longest wait.
    pub fn with_delays(mut self, base_delay: Duration, max_delay: Duration) -> Self {
        self.base_delay = base_delay;
        self.max_delay = max_delay.max(base_delay);
        self
    }

    /// The wait after failed attempt number `attempt` (1-based), with random jitter, at
    /// least `retry_after` when the server asked for it.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_with_jitter(attempt, retry_after, rand::thread_rng().r#gen())
    }

    /// [`delay`](Self::delay) with the jitter given (`0.0..=1.0`): half the exponential
    /// step is fixed, `jitter` scales the other half.
    pub fn delay_with_jitter(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        let step = self
            .base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        let half = step / 2;
        let backoff = half + half.mul_f64(jitter.clamp(0.0, 1.0));
        retry_after.map_or(backoff, |floor| backoff.max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_jitter_stays_within_the_step() {
        let p = RetryPolicy::default();
        let ms = |attempt, jitter| p.delay_with_jitter(attempt, None, jitter).as_millis();
        assert_eq!((ms(1, 0.0), ms(1, 1.0)), (50, 100));
        assert_eq!((ms(2, 0.0), ms(2, 1.0)), (100, 200));
        assert_eq!((ms(3, 0.5), ms(10, 1.0)), (300, 2000));
        for _ in 0..100 {
            let d = p.delay(3, None).as_millis();
            assert!((200..=400).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay_with_jitter(1, Some(Duration::from_secs(3)), 1.0),
            Duration::from_secs(3)
        );
        assert_eq!(RetryPolicy::attempts(0).max_attempts, 1);
    }
}
