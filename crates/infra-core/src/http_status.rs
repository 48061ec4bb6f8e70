//! HTTP replies of SaaS APIs (Inngest, Pusher, …) as [`Error`]s: one status → kind table
//! for every HTTP client in the workspace.

use std::time::{Duration, SystemTime};

use crate::error::{Error, ErrorKind, Result};

/// The error for a non-success reply of `service`: its kind from
/// [`ErrorKind::from_http_status`], the message `"{service} replied {status}: {reason}"` with the
/// server's own reason (trimmed, at most 200 characters), the status as `status` context and
/// `retry_after` when the server sent one.
///
/// ```
/// use infra_core::{ErrorKind, http_status_error};
/// let err = http_status_error("Pusher", 400, "Invalid channel name 'a b'\n", None);
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert_eq!(err.message(), "Pusher replied 400: Invalid channel name 'a b'");
/// assert_eq!(err.context("status"), Some("400"));
/// ```
pub fn http_status_error(
    service: &str,
    status: u16,
    reason: &str,
    retry_after: Option<Duration>,
) -> Error {
    let reason: String = reason.trim().chars().take(200).collect();
    let message = if reason.is_empty() {
        format!("{service} replied {status}")
    } else {
        format!("{service} replied {status}: {reason}")
    };
    let mut err = Error::new(ErrorKind::from_http_status(status), message)
        .with_context("status", status.to_string());
    if let Some(after) = retry_after {
        err = err.with_retry_after(after);
    }
    err
}

/// The longest wait a server's `Retry-After` is taken to ask for. Longer asks (up to
/// `u64::MAX` seconds, or a date centuries ahead) are cut to it: a client adds the wait to its
/// clock, and an unbounded one would overflow there.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The header's name, as errors about it say.
const RETRY_AFTER: &str = "Retry-After";

/// Parses a `Retry-After` header (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date whose
/// distance from now is the wait (zero for a date past). Either is cut to
/// [`MAX_RETRY_AFTER`]; anything else is an invalid-input error naming `Retry-After`.
///
/// ```
/// use std::time::Duration;
/// use infra_core::{MAX_RETRY_AFTER, parse_retry_after};
///
/// assert_eq!(parse_retry_after(" 3 ").unwrap(), Duration::from_secs(3));
/// assert_eq!(parse_retry_after("18446744073709551615").unwrap(), MAX_RETRY_AFTER);
/// assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT").unwrap(), MAX_RETRY_AFTER);
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").unwrap(), Duration::ZERO);
/// assert_eq!(parse_retry_after("soon").unwrap_err().field(), Some("Retry-After"));
/// ```
pub fn parse_retry_after(value: &str) -> Result<Duration> {
    parse_retry_after_at(value, SystemTime::now())
}

/// As [`parse_retry_after`], with an HTTP-date measured from `now`.
pub fn parse_retry_after_at(value: &str, now: SystemTime) -> Result<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // delay-seconds is any run of digits: one too long for a u64 is still a valid, very
        // long ask.
        value.parse().map_or(MAX_RETRY_AFTER, Duration::from_secs)
    } else {
        let at = httpdate::parse_http_date(value).map_err(|_| {
            Error::invalid_input(
                RETRY_AFTER,
                "is neither a number of seconds nor an HTTP date",
            )
        })?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Ok(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for (status, kind) in [
            (400, ErrorKind::InvalidInput),
            (401, ErrorKind::Config),
            (403, ErrorKind::Config),
            (404, ErrorKind::NotFound),
            (413, ErrorKind::InvalidInput),
            (429, ErrorKind::RateLimited),
            (500, ErrorKind::Unavailable),
            (503, ErrorKind::Unavailable),
            (418, ErrorKind::Backend),
        ] {
            assert_eq!(ErrorKind::from_http_status(status), kind, "{status}");
        }
        let err = http_status_error("X", 429, "", parse_retry_after(" 3 ").ok());
        assert_eq!(err.message(), "X replied 429");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn retry_after_dates_count_from_now_and_every_ask_is_bounded() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        for (ask, wait) in [
            ("Wed, 21 Oct 2015 07:29:30 GMT", Duration::from_secs(90)),
            // RFC 850 and asctime, which recipients must accept too.
            ("Wednesday, 21-Oct-15 07:28:10 GMT", Duration::from_secs(10)),
            ("Wed Oct 21 07:28:05 2015", Duration::from_secs(5)),
            ("Wed, 21 Oct 2015 07:00:00 GMT", Duration::ZERO),
            ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
            ("0", Duration::ZERO),
            ("86400", MAX_RETRY_AFTER),
            ("86401", MAX_RETRY_AFTER),
            ("99999999999999999999999999", MAX_RETRY_AFTER),
        ] {
            assert_eq!(parse_retry_after_at(ask, now).unwrap(), wait, "{ask}");
        }
        for garbage in [
            "",
            " ",
            "-1",
            "+5",
            "1.5",
            "1e9",
            "soon",
            "Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            let err = parse_retry_after_at(garbage, now).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{garbage:?}");
            assert_eq!(err.field(), Some("Retry-After"), "{garbage:?}");
        }
    }
}
