//! How a failed Pusher API call is retried.
//!
//! Server errors (5xx), rate limits (429) and transport failures are retried; every other
//! reply is final. Waits follow the policy's [`Backoff`] (exponential, "equal jitter", so
//! clients that failed together do not retry together), and a 429's `Retry-After` is a floor.
//! The caller stops when the next wait would end past the call's deadline.

use std::time::Duration;

use infra_core::{Backoff, MAX_RETRY_AFTER, RetryPolicy};

/// How the Pusher client retries a call unless configured otherwise: 4 attempts, 100 ms
/// doubling up to 2 s between them.
pub const DEFAULT_PUSHER_RETRY: RetryPolicy = RetryPolicy::new(
    4,
    Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
);

/// The wait after failed attempt number `attempt` (1-based): the policy's jittered back-off,
/// at least `retry_after` when the server asked for it — cut to [`MAX_RETRY_AFTER`], as
/// [`parse_retry_after`](infra_core::parse_retry_after) cuts what it reads.
pub(crate) fn retry_wait(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let backoff = policy.delay(attempt);
    retry_after.map_or(backoff, |floor| backoff.max(floor.min(MAX_RETRY_AFTER)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn waits_stay_within_the_backoff_step() {
        let p = DEFAULT_PUSHER_RETRY;
        for attempt in 1..8 {
            let d = retry_wait(&p, attempt, None);
            let step = p.backoff.step(attempt);
            assert!(d >= step / 2 && d <= step, "{attempt}: {d:?}");
        }
        assert_eq!(p.backoff.step(10), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = DEFAULT_PUSHER_RETRY;
        assert_eq!(
            retry_wait(&p, 1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(retry_wait(&p, 1, Some(Duration::MAX)), MAX_RETRY_AFTER);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A reply that asks for an absurd wait (or a policy with absurd steps) never makes a
        /// wait beyond the longest step or the longest ask honoured.
        #[test]
        fn any_attempt_and_any_ask_give_a_bounded_wait(
            attempt in any::<u32>(),
            ask in proptest::option::of((any::<u64>(), 0u32..1_000_000_000)),
            base_ms in 0u64..10_000,
            max_ms in 0u64..100_000,
        ) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(max_ms).max(base);
            let policy = DEFAULT_PUSHER_RETRY.with_backoff(Backoff::new(base, max));
            let ask = ask.map(|(secs, nanos)| Duration::new(secs, nanos));
            let wait = retry_wait(&policy, attempt, ask);
            let ceiling = max.max(MAX_RETRY_AFTER);
            prop_assert!(wait <= ceiling, "{wait:?}");
            if let Some(ask) = ask {
                prop_assert!(wait >= ask.min(MAX_RETRY_AFTER), "{wait:?} < {ask:?}");
            }
        }
    }
}
