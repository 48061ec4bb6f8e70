//! Event ids for backends that assign their own, and the clock the crate reads.
//!
//! Invariants: an id sorts by its creation time to the millisecond and is unique with 64
//! random bits; times are milliseconds since the Unix epoch (0 if the clock is before it).

use std::time::{SystemTime, UNIX_EPOCH};

/// A sortable, unique id: 12 hex digits of milliseconds then 16 random hex digits.
pub(crate) fn new_event_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    format!("{ms:012x}{:016x}", rand::random::<u64>())
}

/// Milliseconds since the Unix epoch, for events without a timestamp.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// `now_ms` plus `delay`, saturating: a delay a handler asks for (`Outcome::retry_after`) may
/// be anything, and a time past the end of `i64` means "never" rather than a wrap or a panic.
pub(crate) fn ms_after(now_ms: i64, delay: std::time::Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_delay_past_the_end_of_time_saturates() {
        assert_eq!(ms_after(1_000, Duration::from_millis(5)), 1_005);
        assert_eq!(ms_after(1_000, Duration::MAX), i64::MAX);
        assert_eq!(ms_after(i64::MAX - 1, Duration::from_secs(1)), i64::MAX);
    }
}
