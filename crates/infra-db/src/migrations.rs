//! The embedded migrations, run through diesel's harness on a blocking task.

use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use infra_core::{Error, Result};

use crate::database::{Database, establish};
use crate::error::map_connection_error;

/// The migrations compiled into this crate (`crates/infra-db/migrations`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// One migration and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The migration's version (its directory name's leading timestamp).
    pub version: String,
    /// Applied already.
    pub applied: bool,
}

/// Runs `f` with diesel's sync migration harness on a dedicated connection, off the async
/// workers (the harness blocks).
async fn with_harness<T, F>(db: &Database, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut AsyncConnectionWrapper<AsyncPgConnection>) -> diesel::migration::Result<T>
        + Send
        + 'static,
{
    let config = db.config();
    let conn = establish(
        config.url.expose().clone(),
        config.connect_timeout,
        config.statement_timeout,
    )
    .await
    .map_err(map_connection_error)?;
    tokio::task::spawn_blocking(move || {
        let mut wrapper = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        f(&mut wrapper).map_err(|e| Error::backend(format!("migration failed: {e}")))
    })
    .await
    .map_err(|e| Error::backend(format!("migration task failed: {e}")))?
}

/// Applies every pending migration in order; returns the versions applied.
pub async fn run_pending_migrations(db: &Database) -> Result<Vec<String>> {
    with_harness(db, |harness| {
        Ok(harness
            .run_pending_migrations(MIGRATIONS)?
            .into_iter()
            .map(|v| v.to_string())
            .collect())
    })
    .await
}

/// Every embedded migration with whether it is applied.
pub async fn migration_status(db: &Database) -> Result<Vec<MigrationStatus>> {
    with_harness(db, |harness| {
        let applied: Vec<String> = harness
            .applied_migrations()?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        let all = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)?;
        Ok(all
            .iter()
            .map(|m| {
                let version = m.name().version().to_string();
                MigrationStatus {
                    applied: applied.contains(&version),
                    version,
                }
            })
            .collect())
    })
    .await
}
