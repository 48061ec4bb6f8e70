//! Exponential back-off with jitter, for every retry loop in the workspace.

use std::time::Duration;

/// Exponential back-off with jitter: the step before retry `n` is `min(base × 2ⁿ⁻¹, max)`, and
/// up to `jitter` of it is taken off at random. [`Backoff::new`] uses "equal jitter" (0.5): every
/// retry waits at least half its step, yet clients that failed together do not retry in lockstep.
/// The one back-off of the workspace: the Pusher and Inngest clients' retries, transaction
/// retries in infra-db and job attempts in infra-jobs all use it.
///
/// ```
/// use std::time::Duration;
/// use infra_core::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
/// let third = backoff.delay(3); // step 400ms: between 200ms and 400ms
/// assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
/// assert!(backoff.delay(30) <= Duration::from_secs(2));
///
/// // No jitter: exactly the step.
/// let exact = backoff.with_jitter(0.0);
/// assert_eq!(exact.delay(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The step of the first retry.
    pub base: Duration,
    /// The largest step.
    pub max: Duration,
    /// The fraction of each step drawn at random and taken off (0 = none, 1 = anywhere from
    /// zero to the step); values outside 0..=1 are clamped.
    pub jitter: f64,
}

impl Backoff {
    /// A back-off starting at `base` and doubling up to `max`, with equal jitter (0.5).
    pub const fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            jitter: 0.5,
        }
    }

    /// The same steps with another jitter fraction.
    pub const fn with_jitter(self, jitter: f64) -> Self {
        Backoff { jitter, ..self }
    }

    /// The step before retry `retry` (1-based) without jitter: `min(base × 2ⁿ⁻¹, max)`.
    pub fn step(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// The jittered delay before retry `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let step = self.step(retry);
        // NaN clamps to NaN; treat it as no jitter rather than a NaN duration (which panics).
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        if jitter == 0.0 {
            return step;
        }
        step - step.mul_f64(jitter * rand::random::<f64>())
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

    #[test]
    fn jitter_is_bounded_and_never_panics() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.with_jitter(0.0).delay(2), Duration::from_millis(200));
        for jitter in [1.0, 7.5, -3.0, f64::NAN, f64::INFINITY] {
            let d = b.with_jitter(jitter).delay(2);
            assert!(d <= Duration::from_millis(200), "{jitter}: {d:?}");
        }
        assert_eq!(b.with_jitter(-3.0).delay(2), Duration::from_millis(200));
        assert_eq!(b.with_jitter(f64::NAN).delay(2), Duration::from_millis(200));
    }
}
