//! The wake times of runs this process parked: a parked run becomes due without any
//! notification (nothing happens at its time but the clock), so idle workers wait until the
//! earliest one instead of a whole poll interval. Runs other processes parked are found by
//! the poll.
//!
//! Invariants: at most [`MAX_KNOWN`] times are kept (the earliest win); a time past is
//! dropped when read.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::time::Duration;

use crate::event_id::now_ms;

/// Most wake times kept.
const MAX_KNOWN: usize = 100_000;

#[derive(Default)]
pub(crate) struct WakeTimes {
    heap: Mutex<BinaryHeap<Reverse<i64>>>,
}

impl WakeTimes {
    /// Remembers that runs become due at `times`.
    pub(crate) fn add(&self, times: impl IntoIterator<Item = i64>) {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        for t in times {
            if heap.len() < MAX_KNOWN {
                heap.push(Reverse(t));
            }
        }
    }

    /// How long to wait for work: `max_wait`, or less when a known run comes due sooner.
    pub(crate) fn wait(&self, max_wait: Duration) -> Duration {
        let now = now_ms();
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(Reverse(t)) = heap.peek().copied() {
            if t > now {
                let until = Duration::from_millis((t - now) as u64);
                return max_wait.min(until);
            }
            heap.pop();
        }
        max_wait
    }
}
