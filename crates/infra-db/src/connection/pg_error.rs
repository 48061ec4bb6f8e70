//! tokio-postgres errors as diesel errors, keeping what PostgreSQL said.

use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use tokio_postgres::error::{DbError, ErrorPosition, Severity, SqlState};

/// Maps a query's error: a server error keeps its kind (by SQLSTATE) and every field
/// PostgreSQL sent; an ended session or a closed socket is diesel's `ClosedConnection`, so
/// callers see it as unavailable rather than as a failed statement.
pub(crate) fn query_error(err: tokio_postgres::Error) -> DieselError {
    if let Some(db) = err.as_db_error() {
        // A FATAL (or PANIC) error ends the session: `pg_terminate_backend`, a shutdown, an
        // idle timeout. Decided by severity, not code: the same codes (class 08, 57P01)
        // also arrive as ordinary errors on a live session (a malformed bind, an error a
        // foreign server sent through postgres_fdw).
        let kind = if matches!(
            db.parsed_severity(),
            Some(Severity::Fatal | Severity::Panic)
        ) {
            DatabaseErrorKind::ClosedConnection
        } else {
            match *db.code() {
                SqlState::UNIQUE_VIOLATION => DatabaseErrorKind::UniqueViolation,
                SqlState::FOREIGN_KEY_VIOLATION => DatabaseErrorKind::ForeignKeyViolation,
                SqlState::RESTRICT_VIOLATION => DatabaseErrorKind::RestrictViolation,
                SqlState::EXCLUSION_VIOLATION => DatabaseErrorKind::ExclusionViolation,
                SqlState::T_R_SERIALIZATION_FAILURE => DatabaseErrorKind::SerializationFailure,
                SqlState::READ_ONLY_SQL_TRANSACTION => DatabaseErrorKind::ReadOnlyTransaction,
                SqlState::NOT_NULL_VIOLATION => DatabaseErrorKind::NotNullViolation,
                SqlState::CHECK_VIOLATION => DatabaseErrorKind::CheckViolation,
                _ => DatabaseErrorKind::Unknown,
            }
        };
        return DieselError::DatabaseError(kind, Box::new(ServerError(db.clone())));
    }
    let kind = if err.is_closed() {
        DatabaseErrorKind::ClosedConnection
    } else {
        DatabaseErrorKind::UnableToSendCommand
    };
    DieselError::DatabaseError(kind, Box::new(err.to_string()))
}

/// What PostgreSQL reported, readable through diesel's error interface.
struct ServerError(DbError);

impl DatabaseErrorInformation for ServerError {
    fn message(&self) -> &str {
        self.0.message()
    }

    fn details(&self) -> Option<&str> {
        self.0.detail()
    }

    fn hint(&self) -> Option<&str> {
        self.0.hint()
    }

    fn table_name(&self) -> Option<&str> {
        self.0.table()
    }

    fn column_name(&self) -> Option<&str> {
        self.0.column()
    }

    fn constraint_name(&self) -> Option<&str> {
        self.0.constraint()
    }

    fn statement_position(&self) -> Option<i32> {
        match self.0.position()? {
            ErrorPosition::Original(at) | ErrorPosition::Internal { position: at, .. } => {
                i32::try_from(*at).ok()
            }
        }
    }
}
