//! diesel, connection and pool failures mapped into `infra_core::Error`, in one place, and the
//! one rule deciding which PostgreSQL errors are worth retrying.

use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolError as ManagerError;
use diesel_async::pooled_connection::deadpool::PoolError;
use infra_core::{Error, ErrorKind};

use crate::connection::server_sqlstate;

/// SQLSTATE `serialization_failure`: a serializable transaction lost a conflict.
pub const SERIALIZATION_FAILURE: &str = "40001";
/// SQLSTATE `deadlock_detected`: PostgreSQL aborted one transaction of a lock cycle.
pub const DEADLOCK_DETECTED: &str = "40P01";

/// The one retry rule: a transaction that failed with this SQLSTATE may succeed if re-run.
/// Serialization failures (`40001`) and deadlocks (`40P01`) only; the decision is made on the
/// code ([`sqlstate`]), never on message text. `map_diesel_error` and `Database::transaction`
/// both ask here.
///
/// ```
/// assert!(infra_db::is_retryable_sqlstate("40001"));
/// assert!(infra_db::is_retryable_sqlstate("40P01"));
/// assert!(!infra_db::is_retryable_sqlstate("23505"));
/// ```
pub fn is_retryable_sqlstate(sqlstate: &str) -> bool {
    matches!(sqlstate, SERIALIZATION_FAILURE | DEADLOCK_DETECTED)
}

/// Whether a query error is a serialization failure or a deadlock: the transaction may
/// succeed if re-run. [`is_retryable_sqlstate`] applied to [`sqlstate`].
pub fn is_retryable_transaction_error(err: &DieselError) -> bool {
    sqlstate(err).is_some_and(|code| is_retryable_sqlstate(&code))
}

/// The SQLSTATE of a query error.
///
/// For every error PostgreSQL reports through the pool's [`DbConnection`](crate::DbConnection)
/// this is the code the server sent — `40P01` for a deadlock, `22012` for a division by
/// zero — whatever language `lc_messages` gives its message. For errors of diesel-async's own
/// connection (`LISTEN`, migrations) only the codes diesel has a kind for are known (the
/// unique, foreign-key, not-null, check, restrict and exclusion violations, read-only
/// transaction, serialization failure); a socket closed without a server error reads as
/// `08006`. Message text is never read.
pub fn sqlstate(err: &DieselError) -> Option<String> {
    let DieselError::DatabaseError(kind, info) = err else {
        return None;
    };
    if let Some(code) = server_sqlstate(&**info) {
        return Some(code);
    }
    let code = match kind {
        DatabaseErrorKind::UniqueViolation => "23505",
        DatabaseErrorKind::ForeignKeyViolation => "23503",
        DatabaseErrorKind::NotNullViolation => "23502",
        DatabaseErrorKind::CheckViolation => "23514",
        DatabaseErrorKind::RestrictViolation => "23001",
        DatabaseErrorKind::ExclusionViolation => "23P01",
        DatabaseErrorKind::ReadOnlyTransaction => "25006",
        DatabaseErrorKind::SerializationFailure => SERIALIZATION_FAILURE,
        DatabaseErrorKind::ClosedConnection => "08006",
        _ => return None,
    };
    Some(code.to_owned())
}

/// Maps a query error: by its SQLSTATE, or (an ended session) by its kind.
pub fn map_diesel_error(err: DieselError) -> Error {
    match &err {
        DieselError::NotFound => Error::new(ErrorKind::NotFound, "no row matched").with_source(err),
        DieselError::DatabaseError(kind, info) => {
            let code = sqlstate(&err);
            let mapped = match (kind, code.as_deref()) {
                // A FATAL error or a closed socket: the session is over, whatever the code
                // (57P01 for a terminated backend, 08006 without a server error).
                (DatabaseErrorKind::ClosedConnection, _) => ErrorKind::Unavailable,
                (_, Some("23505" | "23P01")) => ErrorKind::Conflict,
                (_, Some("23503" | "23502" | "23514" | "23001")) => ErrorKind::InvalidInput,
                (_, Some(code)) if is_retryable_sqlstate(code) => ErrorKind::Conflict,
                _ => ErrorKind::Backend,
            };
            let mut message = format!("postgres: {}", info.message());
            if let Some(constraint) = info.constraint_name() {
                message.push_str(&format!(" (constraint {constraint})"));
            }
            let mut e = Error::new(mapped, message);
            if let Some(code) = code {
                crate::pool_metrics::count_query_error(&code);
                if is_retryable_sqlstate(&code) {
                    e = e.with_retryable(true);
                }
                e = e.with_context("sqlstate", code);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn db_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn only_serialization_failures_and_deadlocks_retry() {
        for code in ["40001", "40P01"] {
            assert!(is_retryable_sqlstate(code), "{code}");
        }
        for code in [
            "23505", "40002", "40003", "40000", "55P03", "57014", "08006", "", "40p01",
        ] {
            assert!(!is_retryable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn retry_follows_the_sqlstate_never_the_message() {
        let serialization = db_error(
            DatabaseErrorKind::SerializationFailure,
            "could not serialize access due to read/write dependencies among transactions",
        );
        assert!(is_retryable_transaction_error(&serialization));
        let mapped = map_diesel_error(serialization);
        assert_eq!(mapped.kind(), ErrorKind::Conflict);
        assert_eq!(mapped.context("sqlstate"), Some("40001"));
        assert!(mapped.is_retryable());

        // Text alone carries no code: an error worded like a deadlock or a serialization
        // failure but not reported with its SQLSTATE (the pool's connection keeps the code of
        // every server error; tests/translated_messages.rs) is not one.
        for message in [
            "deadlock detected",
            "Verklemmung (Deadlock) entdeckt",
            "deadlock detected in trigger foo",
            "could not serialize access",
        ] {
            let err = db_error(DatabaseErrorKind::Unknown, message);
            assert_eq!(sqlstate(&err), None, "{message}");
            assert!(!is_retryable_transaction_error(&err), "{message}");
            let mapped = map_diesel_error(err);
            assert_eq!(mapped.kind(), ErrorKind::Backend, "{message}");
            assert_eq!(mapped.context("sqlstate"), None, "{message}");
            assert!(!mapped.is_retryable(), "{message}");
        }

        let unique = map_diesel_error(db_error(
            DatabaseErrorKind::UniqueViolation,
            "duplicate key value violates unique constraint \"users_email_key\"",
        ));
        assert_eq!(unique.kind(), ErrorKind::Conflict);
        assert_eq!(unique.context("sqlstate"), Some("23505"));
        assert!(!unique.is_retryable());

        let closed = map_diesel_error(db_error(DatabaseErrorKind::ClosedConnection, "gone"));
        assert_eq!(closed.kind(), ErrorKind::Unavailable);
        assert_eq!(closed.context("sqlstate"), Some("08006"));
    }
}
