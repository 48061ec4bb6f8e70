//! HTTP replies of SaaS APIs (Inngest, Pusher, …) as [`Error`]s: one status → kind table
//! for every HTTP client in the workspace.

use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// The kind of error an HTTP status means, for a status that is not a success.
///
/// 400, 413 and 422 refuse the input; 401 and 403 the credentials or the account (a
/// configuration matter); 404 is not found; 408 a timeout; 409 a conflict; 429 a rate limit;
/// 5xx the service being unavailable; anything else a backend error.
///
/// ```
/// use infra_core::{ErrorKind, error_kind_for_status};
/// assert_eq!(error_kind_for_status(429), ErrorKind::RateLimited);
/// assert!(error_kind_for_status(503).is_retryable());
/// assert!(!error_kind_for_status(400).is_retryable());
/// ```
pub fn error_kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 413 | 422 => ErrorKind::InvalidInput,
        401 | 403 => ErrorKind::Config,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Backend,
    }
}

/// The error for a non-success reply of `service`: its kind from
/// [`error_kind_for_status`], the message `"{service} replied {status}: {reason}"` with the
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
    let mut err = Error::new(error_kind_for_status(status), message)
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
            assert_eq!(error_kind_for_status(status), kind, "{status}");
        }
        let err = http_status_error("X", 429, "", parse_retry_after(" 3 "));
        assert_eq!(err.message(), "X replied 429");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
