//! Upstash REST failures mapped into `infra_core::Error`, in one place: transport errors, HTTP
//! statuses, and `{"error": …}` replies (Redis error strings, whose first word is the code).

use std::time::Duration;

use infra_core::{Error, ErrorKind};

/// A request that did not get an HTTP answer. reqwest's message may name the URL, which holds
/// no secret (the token travels in a header).
pub(crate) fn map_transport_error(op: &str, err: reqwest::Error, timeout: Duration) -> Error {
    if err.is_timeout() {
        return Error::timeout(&format!("upstash {op}"), timeout).with_source(err);
    }
    let kind = if err.is_connect() || err.is_request() || err.is_body() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Backend
    };
    Error::new(kind, format!("upstash {op}: {err}")).with_source(err)
}

/// An HTTP answer other than Upstash's 200/400 JSON reply. `body` is Upstash's text (it never
/// holds the token, which this function never sees).
pub(crate) fn map_status(
    op: &str,
    status: u16,
    body: &str,
    url_variable: &str,
    token_variable: &str,
) -> Error {
    let excerpt: String = body.chars().take(200).collect();
    let err = match status {
        401 | 403 => Error::config(
            token_variable,
            format_args!(
                "was refused by Upstash (HTTP {status}): a wrong or revoked token, or the \
                 token of another database"
            ),
        ),
        404 | 405 => Error::config(
            url_variable,
            format_args!(
                "answered HTTP {status} to {op}: not an Upstash REST endpoint (use the \
                 database's https:// REST URL from the console)"
            ),
        ),
        429 => Error::new(
            ErrorKind::RateLimited,
            format!("upstash {op}: HTTP 429, the database's request limit is reached"),
        ),
        500..=599 => Error::unavailable(format!("upstash {op}: HTTP {status}: {excerpt}")),
        _ => Error::backend(format!("upstash {op}: unexpected HTTP {status}: {excerpt}")),
    };
    err.with_context("http_status", status.to_string())
}

/// A `{"error": "CODE message"}` reply.
pub(crate) fn map_reply_error(op: &str, message: &str) -> Error {
    let code = message
        .split_whitespace()
        .next()
        .filter(|w| w.chars().all(|c| c.is_ascii_uppercase()))
        .unwrap_or("ERR");
    let kind = match code {
        "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" => ErrorKind::Unavailable,
        _ if message.contains("max daily request limit")
            || message.contains("max requests limit") =>
        {
            ErrorKind::RateLimited
        }
        _ => ErrorKind::Backend,
    };
    Error::new(kind, format!("upstash {op}: {message}")).with_context("redis_code", code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_name_the_variable_to_fix() {
        let err = map_status(
            "GET",
            401,
            "{\"error\":\"Unauthorized\"}",
            "URL_VAR",
            "TOKEN_VAR",
        );
        assert_eq!(
            (err.kind(), err.variable()),
            (ErrorKind::Config, Some("TOKEN_VAR"))
        );
        assert!(!err.is_retryable());
        let err = map_status("GET", 404, "", "URL_VAR", "TOKEN_VAR");
        assert_eq!(err.variable(), Some("URL_VAR"));
        let err = map_status("GET", 503, "down", "URL_VAR", "TOKEN_VAR");
        assert!(err.is_retryable() && err.kind() == ErrorKind::Unavailable);
        assert_eq!(err.context("http_status"), Some("503"));
        let err = map_status("GET", 429, "", "URL_VAR", "TOKEN_VAR");
        assert_eq!(err.kind(), ErrorKind::RateLimited);
    }

    #[test]
    fn reply_errors_keep_code_and_kind() {
        let err = map_reply_error(
            "GET",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        );
        assert_eq!(err.context("redis_code"), Some("WRONGTYPE"));
        assert_eq!(err.kind(), ErrorKind::Backend);
        let err = map_reply_error("SET", "ERR max daily request limit exceeded");
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        let err = map_reply_error("GET", "LOADING Redis is loading the dataset in memory");
        assert!(err.is_retryable());
        let err = map_reply_error("GET", "something odd");
        assert_eq!(err.context("redis_code"), Some("ERR"));
    }
}
