//! Inngest's time strings (SDK spec §1.3.2) from durations, as its SDKs write them: weeks,
//! days, hours, minutes and seconds composed (`"2h30m10s"`), a sub-second duration rounded up
//! to `"1s"` (durable waits have a resolution of a second), anything below a second dropped.

use std::time::Duration;

/// The time string of `d`.
pub(crate) fn time_string(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "1s".into();
    }
    let mut out = String::new();
    for (suffix, period) in [
        ("w", 7 * 86_400),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        let n = secs / period;
        if n > 0 {
            out.push_str(&format!("{n}{suffix}"));
            secs %= period;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_compose_like_the_sdks() {
        assert_eq!(time_string(Duration::from_secs(3600)), "1h");
        assert_eq!(time_string(Duration::from_secs(9010)), "2h30m10s");
        assert_eq!(time_string(Duration::from_millis(300)), "1s");
        assert_eq!(time_string(Duration::from_secs(8 * 86_400 + 1)), "1w1d1s");
    }
}
