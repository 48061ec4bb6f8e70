//! In-process rate-limit state, shared by `MemoryCache`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use infra_core::{RateLimitDecision, Result, check_rate_limit_args};

use crate::algorithm::{self, State};
use crate::config::RateLimitAlgorithm;

/// Forget expired states once the map grows past this many keys.
const SWEEP_AT: usize = 10_000;

/// Exact, in-process counters: one mutex-guarded map, so concurrent calls serialise.
pub(crate) struct MemoryLimiter {
    algorithm: RateLimitAlgorithm,
    states: Mutex<HashMap<String, (State, u64)>>,
}

/// Milliseconds on a monotonic clock (wall-clock jumps must not reset windows).
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // Start well above zero so window arithmetic never underflows.
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 86_400_000
}

impl MemoryLimiter {
    pub(crate) fn new(algorithm: RateLimitAlgorithm) -> Self {
        MemoryLimiter {
            algorithm,
            states: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn check(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateLimitDecision> {
        check_rate_limit_args(key, limit, window)?;
        let window_ms = (window.as_millis() as u64).max(1);
        let slot = format!("{key}\u{0}{limit}\u{0}{window_ms}");
        let now = now_ms();
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if states.len() >= SWEEP_AT {
            states.retain(|_, (_, keep_until)| *keep_until > now);
        }
        let previous = states
            .get(&slot)
            .filter(|(_, until)| *until > now)
            .map(|(s, _)| *s);
        let step = match self.algorithm {
            RateLimitAlgorithm::FixedWindow => algorithm::fixed_window,
            RateLimitAlgorithm::SlidingWindow => algorithm::sliding_window,
            RateLimitAlgorithm::TokenBucket => algorithm::gcra,
        };
        let (state, outcome) = step(previous, now, limit, window_ms);
        states.insert(slot, (state, now + outcome.keep_ms.max(1)));
        Ok(RateLimitDecision {
            allowed: outcome.allowed,
            limit,
            remaining: outcome.remaining,
            reset_after: Duration::from_millis(outcome.reset_after_ms),
            fallback: false,
        })
    }
}
