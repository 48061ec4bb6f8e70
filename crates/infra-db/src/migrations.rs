//! Running the migrations an app hands over, through diesel's harness on a blocking task.
//!
//! The library owns no schema: an app embeds its own folder with
//! `diesel_migrations::embed_migrations!("migrations")` and passes the result here (and so
//! does any other crate with tables of its own, such as infra-jobs' queue). Every set is
//! recorded in diesel's `__diesel_schema_migrations`, so versions must not collide between
//! sets.
//!
//! Runs are serialised across processes by a session advisory lock
//! ([`MIGRATION_LOCK_KEY`]): several processes starting at once apply each migration once,
//! and the later ones find nothing pending.

use diesel::RunQueryDsl;
use diesel::sql_types::BigInt;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use infra_core::{Error, Result};

use crate::database::Database;
use crate::error::map_connection_error;
use crate::session::establish;

/// The advisory lock key (`pg_advisory_lock`, one bigint) that migration runs hold:
/// "infra_db" in ASCII.
pub const MIGRATION_LOCK_KEY: i64 = 0x696e_6672_615f_6462;

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
    let conn = establish::<AsyncPgConnection>(
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

/// Applies every pending migration of `migrations` in order; returns the versions applied.
///
/// ```ignore
/// use infra_db::diesel_migrations::{EmbeddedMigrations, embed_migrations};
///
/// const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
///
/// # async fn demo(db: infra_db::Database) -> infra_core::Result<()> {
/// for version in infra_db::run_pending_migrations(&db, MIGRATIONS).await? {
///     println!("applied {version}");
/// }
/// # Ok(()) }
/// ```
pub async fn run_pending_migrations(
    db: &Database,
    migrations: EmbeddedMigrations,
) -> Result<Vec<String>> {
    with_harness(db, move |harness| {
        // Held for the whole run: another process's run waits, then finds nothing pending.
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
            .execute(harness)?;
        let applied: Vec<String> = harness
            .run_pending_migrations(migrations)?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
            .execute(harness)?;
        Ok(applied)
    })
    .await
}

/// Every migration of `migrations` with whether it is applied.
pub async fn migration_status(
    db: &Database,
    migrations: EmbeddedMigrations,
) -> Result<Vec<MigrationStatus>> {
    with_harness(db, move |harness| {
        let applied: Vec<String> = harness
            .applied_migrations()?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        let all = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&migrations)?;
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
