//! The rate-limit arithmetic, in milliseconds. `MemoryRateLimiter` runs it directly; the
//! Redis Lua scripts in `redis_scripts.rs` are line-for-line translations of it, so both
//! backends decide alike.

/// Per-key state of one algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Fixed window: the window index and its count.
    Fixed { index: u64, count: u64 },
    /// Sliding window: the current window index, its count and the previous window's count.
    Sliding {
        index: u64,
        current: u64,
        previous: u64,
    },
    /// GCRA: the theoretical arrival time.
    Gcra { tat: u64 },
}

/// A decision before it becomes a `RateLimitDecision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub allowed: bool,
    pub remaining: u64,
    pub reset_after_ms: u64,
    /// When the state may be forgotten, in ms from `now`.
    pub keep_ms: u64,
}

pub(crate) fn fixed_window(
    state: Option<State>,
    now: u64,
    limit: u64,
    window: u64,
) -> (State, Outcome) {
    let index = now / window;
    let count = match state {
        Some(State::Fixed { index: i, count }) if i == index => count,
        _ => 0,
    };
    let allowed = count < limit;
    let count = if allowed { count + 1 } else { count };
    let reset_after_ms = (index + 1) * window - now;
    (
        State::Fixed { index, count },
        Outcome {
            allowed,
            remaining: limit - count,
            reset_after_ms,
            keep_ms: reset_after_ms,
        },
    )
}

pub(crate) fn sliding_window(
    state: Option<State>,
    now: u64,
    limit: u64,
    window: u64,
) -> (State, Outcome) {
    let index = now / window;
    let (current, previous) = match state {
        Some(State::Sliding {
            index: i, current, ..
        }) if i + 1 == index => (0, current),
        Some(State::Sliding {
            index: i,
            current,
            previous,
        }) if i == index => (current, previous),
        _ => (0, 0),
    };
    let into = now - index * window;
    // The previous window counts by the share of it the sliding window still covers.
    let weighted = |prev: u64| prev as f64 * (window - into) as f64 / window as f64;
    let estimate = weighted(previous) + current as f64;
    let allowed = estimate < limit as f64;
    let current = if allowed { current + 1 } else { current };
    let used = weighted(previous) + current as f64;
    let remaining = (limit as f64 - used).floor().max(0.0) as u64;
    let to_window_end = window - into;
    let reset_after_ms = if allowed {
        to_window_end
    } else {
        sliding_retry_after(previous, current, limit, window, into)
    };
    (
        State::Sliding {
            index,
            current,
            previous,
        },
        Outcome {
            allowed,
            remaining,
            reset_after_ms,
            keep_ms: to_window_end + window,
        },
    )
}

/// How long until a refused sliding-window call would pass, with no other traffic.
fn sliding_retry_after(previous: u64, current: u64, limit: u64, window: u64, into: u64) -> u64 {
    let w = window as f64;
    let to_window_end = window - into;
    if current < limit && previous > 0 {
        // Within this window once previous * (w - t) / w < limit - current.
        let t = w * (1.0 - (limit - current) as f64 / previous as f64);
        let wait = (t - into as f64).floor().max(0.0) as u64 + 1;
        if wait < to_window_end {
            return wait;
        }
    }
    // In the next window, this window's count becomes the weighted one.
    let t_next = if current >= limit {
        (w * (1.0 - limit as f64 / current as f64)).floor().max(0.0) as u64 + 1
    } else {
        0
    };
    to_window_end + t_next
}

pub(crate) fn gcra(state: Option<State>, now: u64, limit: u64, window: u64) -> (State, Outcome) {
    let interval = (window / limit).max(1);
    let tat = match state {
        Some(State::Gcra { tat }) => tat.max(now),
        _ => now,
    };
    let new_tat = tat + interval;
    if new_tat - now > window {
        let retry = new_tat - window - now;
        return (
            State::Gcra { tat },
            Outcome {
                allowed: false,
                remaining: 0,
                reset_after_ms: retry,
                keep_ms: tat - now,
            },
        );
    }
    let ahead = new_tat - now;
    (
        State::Gcra { tat: new_tat },
        Outcome {
            allowed: true,
            remaining: (window - ahead) / interval,
            reset_after_ms: ahead,
            keep_ms: ahead,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        f: fn(Option<State>, u64, u64, u64) -> (State, Outcome),
        calls: &[u64],
        limit: u64,
        window: u64,
    ) -> Vec<Outcome> {
        let mut state = None;
        calls
            .iter()
            .map(|&now| {
                let (s, o) = f(state, now, limit, window);
                state = Some(s);
                o
            })
            .collect()
    }

    #[test]
    fn fixed_window_counts_and_resets() {
        let out = run(fixed_window, &[1000, 1100, 1200, 2000], 2, 1000);
        assert_eq!(
            out.iter().map(|o| o.allowed).collect::<Vec<_>>(),
            [true, true, false, true]
        );
        assert_eq!(out[1].remaining, 0);
        assert_eq!(out[2].reset_after_ms, 800);
    }

    #[test]
    fn sliding_window_weighs_the_previous_window() {
        // 10 calls at the end of window 0; halfway into window 1 they weigh 5.
        let mut calls = vec![999; 10];
        calls.extend([1500, 1500, 1500, 1500, 1500, 1500]);
        let out = run(sliding_window, &calls, 10, 1000);
        let allowed: Vec<bool> = out.iter().map(|o| o.allowed).collect();
        assert_eq!(&allowed[10..], [true, true, true, true, true, false]);
        let refused = out[15];
        // 5 + 5 weighted 0.5 => need previous weight < 5 - ... retry is after some ms, within window.
        assert!(
            refused.reset_after_ms > 0 && refused.reset_after_ms <= 500,
            "{refused:?}"
        );
        // After waiting, the call passes.
        let (_, later) = sliding_window(
            Some(State::Sliding {
                index: 1,
                current: 5,
                previous: 10,
            }),
            1500 + refused.reset_after_ms,
            10,
            1000,
        );
        assert!(later.allowed);
    }

    #[test]
    fn sliding_window_retry_when_current_is_full() {
        let (_, o) = sliding_window(
            Some(State::Sliding {
                index: 0,
                current: 2,
                previous: 0,
            }),
            100,
            2,
            800,
        );
        assert!(!o.allowed);
        assert_eq!(o.reset_after_ms, 700 + 1);
        let (_, next) = sliding_window(
            Some(State::Sliding {
                index: 0,
                current: 2,
                previous: 0,
            }),
            801,
            2,
            800,
        );
        assert!(next.allowed);
    }

    #[test]
    fn gcra_allows_a_burst_then_spaces_calls() {
        let out = run(gcra, &[0, 0, 0, 0, 0, 0], 5, 60_000);
        assert_eq!(out.iter().filter(|o| o.allowed).count(), 5);
        assert_eq!(out[0].remaining, 4);
        assert_eq!(out[5].reset_after_ms, 12_000);
    }
}
