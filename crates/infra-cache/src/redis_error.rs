//! Redis and pool failures mapped into `infra_core::Error`, in one place.

use deadpool_redis::PoolError;
use infra_core::{Error, ErrorKind};
use redis::RedisError;

/// Maps a client error; `op` names the command for the message, `url_variable` the variable
/// the URL came from (named when Redis refuses the credentials in it).
pub(crate) fn map_redis_error(op: &str, url_variable: &str, err: RedisError) -> Error {
    let kind = if err.is_timeout() {
        ErrorKind::Timeout
    } else if err.is_connection_refusal() || err.is_io_error() || err.is_connection_dropped() {
        ErrorKind::Unavailable
    } else if err.kind() == redis::ErrorKind::AuthenticationFailed {
        return Error::config(url_variable, "was refused by Redis (authentication failed)")
            .with_source(err);
    } else {
        ErrorKind::Backend
    };
    let mut mapped = Error::new(kind, format!("redis {op}: {err}"));
    if let Some(code) = err.code() {
        mapped = mapped.with_context("redis_code", code);
    }
    mapped.with_source(err)
}

/// Maps a failure to get a pooled connection.
pub(crate) fn map_pool_error(op: &str, url_variable: &str, err: PoolError) -> Error {
    match err {
        PoolError::Backend(err) => map_redis_error(op, url_variable, err),
        PoolError::Timeout(which) => Error::new(
            ErrorKind::Timeout,
            format!("redis {op}: timed out getting a connection ({which:?})"),
        ),
        PoolError::Closed => Error::unavailable(format!("redis {op}: the pool is closed")),
        other => Error::backend(format!("redis {op}: {other}")),
    }
}

/// Whether the connection itself failed (rather than the command): the lease holding it is
/// given back to the pool, whose check decides whether it lives on.
pub(crate) fn connection_failed(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_unrecoverable_error()
}
