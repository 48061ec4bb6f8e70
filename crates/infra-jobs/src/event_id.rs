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
