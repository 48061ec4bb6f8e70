//! diesel, connection and pool failures mapped into `infra_core::Error`, in one place.

use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolError as ManagerError;
use diesel_async::pooled_connection::deadpool::PoolError;
use infra_core::{Error, ErrorKind};

/// SQLSTATEs worth retrying: serialization failure and deadlock.
pub(crate) const RETRYABLE_SQLSTATES: [&str; 2] = ["40001", "40P01"];

/// Maps a query error.
pub fn map_diesel_error(err: DieselError) -> Error {
    match &err {
        DieselError::NotFound => Error::new(ErrorKind::NotFound, "no row matched").with_source(err),
        DieselError::DatabaseError(kind, info) => {
            let (mapped, sqlstate) = match kind {
                DatabaseErrorKind::UniqueViolation => (ErrorKind::Conflict, "23505"),
                DatabaseErrorKind::ForeignKeyViolation => (ErrorKind::InvalidInput, "23503"),
                DatabaseErrorKind::NotNullViolation => (ErrorKind::InvalidInput, "23502"),
                DatabaseErrorKind::CheckViolation => (ErrorKind::InvalidInput, "23514"),
                DatabaseErrorKind::SerializationFailure => (ErrorKind::Conflict, "40001"),
                DatabaseErrorKind::ClosedConnection => (ErrorKind::Unavailable, "08006"),
                _ => (ErrorKind::Backend, ""),
            };
            let mut message = format!("postgres: {}", info.message());
            if let Some(constraint) = info.constraint_name() {
                message.push_str(&format!(" (constraint {constraint})"));
            }
            let mut e = Error::new(mapped, message);
            if !sqlstate.is_empty() {
                e = e.with_context("sqlstate", sqlstate);
            }
            if RETRYABLE_SQLSTATES.contains(&sqlstate) {
                e = e.with_retryable(true);
            }
            e.with_source(err)
        }
        _ => Error::backend(format!("postgres: {err}")).with_source(err),
    }
}

/// Maps a failure to open a connection.
pub fn map_connection_error(err: ConnectionError) -> Error {
    match &err {
        ConnectionError::InvalidConnectionUrl(_) => {
            Error::config("DATABASE_URL", "is not a connection URL PostgreSQL accepts")
        }
        ConnectionError::BadConnection(message) => {
            // tokio-postgres says "error connecting to server: Connection refused" and the like,
            // never the password.
            Error::unavailable(format!("cannot connect to PostgreSQL: {message}")).with_source(err)
        }
        _ => Error::unavailable(format!("cannot connect to PostgreSQL: {err}")).with_source(err),
    }
}

/// Maps a failure to get a pooled connection.
pub fn map_pool_error(err: PoolError) -> Error {
    match err {
        PoolError::Timeout(which) => Error::new(
            ErrorKind::Timeout,
            format!("timed out getting a PostgreSQL connection ({which:?})"),
        ),
        PoolError::Backend(ManagerError::ConnectionError(e)) => map_connection_error(e),
        PoolError::Backend(ManagerError::QueryError(e)) => map_diesel_error(e),
        PoolError::Closed => Error::unavailable("the PostgreSQL pool is closed"),
        other => Error::backend(format!("PostgreSQL pool: {other}")),
    }
}
