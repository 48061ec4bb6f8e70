//! HTTP replies of SaaS APIs (Inngest, Pusher, …) as [`Error`]s, the kind from the one
//! status table [`ErrorKind::from_http_status`].

use std::time::Duration;

use crate::error::{Error, ErrorKind};

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

/// Parses a `Retry-After` header given in seconds (the HTTP-date form is not used by the
/// APIs we call and is ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_status_and_retry_after() {
        let err = http_status_error("X", 429, "", parse_retry_after(" 3 "));
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert_eq!(err.message(), "X replied 429");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
