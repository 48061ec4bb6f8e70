//! Exponential back-off with jitter, for every retry loop in the workspace.

use std::time::Duration;

/// Exponential back-off with "equal jitter": the delay before retry `n` is half of
/// `min(base × 2ⁿ⁻¹, max)` fixed plus up to the other half at random, so clients that failed
/// together do not retry in lockstep, yet every retry waits at least half its step.
///
/// ```
/// use std::time::Duration;
/// use infra_core::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
/// let third = backoff.delay(3); // step 400ms: between 200ms and 400ms
/// assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
/// assert!(backoff.delay(30) <= Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The step of the first retry.
    pub base: Duration,
    /// The largest step.
    pub max: Duration,
}

impl Backoff {
    /// A back-off starting at `base` and doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max }
    }

    /// The step before retry `retry` (1-based) without jitter: `min(base × 2ⁿ⁻¹, max)`.
    pub fn step(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// The jittered delay before retry `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let half = self.step(retry) / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_stays_within_its_step() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
        assert_eq!(b.step(0), Duration::from_millis(10));
        assert_eq!(b.step(1), Duration::from_millis(10));
        assert_eq!(b.step(2), Duration::from_millis(20));
        assert_eq!(b.step(3), Duration::from_millis(40));
        assert_eq!(b.step(4), Duration::from_millis(50));
        assert_eq!(b.step(u32::MAX), Duration::from_millis(50));
        for retry in 1..10 {
            let d = b.delay(retry);
            assert!(
                d >= b.step(retry) / 2 && d <= b.step(retry),
                "{retry}: {d:?}"
            );
        }
    }
}
