//! Counts a connection's actions in one-second windows (client events, subscribes).

use std::time::{Duration, Instant};

/// Actions in the current one-second window; a window starts with its first action.
pub(crate) struct RateWindow {
    window_start: Option<Instant>,
    count: u32,
}

impl RateWindow {
    pub fn new() -> Self {
        RateWindow {
            window_start: None,
            count: 0,
        }
    }

    /// Counts one action at `now`; whether it is within `per_second`.
    pub fn admit(&mut self, per_second: u32, now: Instant) -> bool {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if expired {
            self.window_start = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_at_a_time() {
        let start = Instant::now();
        let mut rate = RateWindow::new();
        assert!((0..3).all(|_| rate.admit(3, start)));
        assert!(!rate.admit(3, start + Duration::from_millis(999)));
        assert!(rate.admit(3, start + Duration::from_secs(1)));
        // A clock that seems to go back never panics.
        assert!(rate.admit(3, start));
    }
}
