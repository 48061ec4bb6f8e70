//! tokio-postgres errors as diesel errors, keeping what PostgreSQL said — its SQLSTATE
//! included.
//!
//! diesel's error carries the server's report as a `Box<dyn DatabaseErrorInformation>`, whose
//! methods offer the message, details and names but no code, and which cannot be downcast
//! back to ours. So each server error's code is kept beside it, in a table keyed by the
//! address of the boxed report: an error is put in when boxed and taken out when dropped, so
//! while an error lives its address names it alone, and [`server_sqlstate`] finds the code of
//! exactly that error — whatever language its message is in.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use tokio_postgres::error::{DbError, ErrorPosition, Severity, SqlState};

/// The SQLSTATE of every [`ServerError`] alive, by the address of the boxed error. Only errors
/// touch it (one insert and one removal each), never a successful query.
static LIVE_CODES: LazyLock<Mutex<HashMap<usize, SqlState>>> = LazyLock::new(Mutex::default);

fn live_codes() -> MutexGuard<'static, HashMap<usize, SqlState>> {
    // The table stays consistent even if a holder panicked: each step is one map operation.
    LIVE_CODES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a boxed report lives: the identity of the error while it lives.
fn address(info: &dyn DatabaseErrorInformation) -> usize {
    (info as *const dyn DatabaseErrorInformation)
        .cast::<()>()
        .addr()
}

/// The SQLSTATE PostgreSQL sent with the error whose report this is, when the pool's
/// connection made it (diesel-async's own connections keep no code).
pub(crate) fn server_sqlstate(info: &dyn DatabaseErrorInformation) -> Option<String> {
    live_codes()
        .get(&address(info))
        .map(|code| code.code().to_owned())
}

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
        return DieselError::DatabaseError(kind, ServerError::boxed(db.clone()));
    }
    let kind = if err.is_closed() {
        DatabaseErrorKind::ClosedConnection
    } else {
        DatabaseErrorKind::UnableToSendCommand
    };
    DieselError::DatabaseError(kind, Box::new(err.to_string()))
}

/// What PostgreSQL reported, readable through diesel's error interface. Exists only boxed
/// ([`ServerError::boxed`]), so that its address does not change while its code is listed.
struct ServerError(DbError);

impl ServerError {
    fn boxed(report: DbError) -> Box<dyn DatabaseErrorInformation + Send + Sync> {
        let code = report.code().clone();
        let boxed = Box::new(ServerError(report));
        live_codes().insert(address(&*boxed), code);
        boxed
    }
}

impl Drop for ServerError {
    fn drop(&mut self) {
        live_codes().remove(&address(self));
    }
}

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

#[cfg(test)]
mod tests {
    //! Against the real PostgreSQL (`DATABASE_URL`, else the local one): the only test of this
    //! binary that makes server errors, so the table holds nothing else.
    use super::*;

    #[tokio::test]
    async fn each_server_error_knows_its_code_while_it_lives_and_leaves_nothing_behind() {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL answers");
        tokio::spawn(connection);
        let mut errors = Vec::new();
        for sql in ["SELECT 1/0", "SELECT * FROM no_such_table_here"] {
            for _ in 0..50 {
                errors.push(query_error(client.simple_query(sql).await.unwrap_err()));
            }
        }
        let addresses: Vec<usize> = errors
            .iter()
            .map(|err| {
                let DieselError::DatabaseError(_, info) = err else {
                    panic!("{err:?}")
                };
                address(&**info)
            })
            .collect();
        for (i, err) in errors.iter().enumerate() {
            let DieselError::DatabaseError(_, info) = err else {
                unreachable!()
            };
            let expected = if i < 50 { "22012" } else { "42P01" };
            assert_eq!(server_sqlstate(&**info).as_deref(), Some(expected));
        }
        drop(errors);
        let table = live_codes();
        assert!(addresses.iter().all(|a| !table.contains_key(a)));
        // An error that is not the server's has no code here.
        let other: Box<dyn DatabaseErrorInformation + Send + Sync> = Box::new("x".to_owned());
        drop(table);
        assert_eq!(server_sqlstate(&*other), None);
    }
}
