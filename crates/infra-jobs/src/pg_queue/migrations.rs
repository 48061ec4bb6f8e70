//! The queue's tables, as migrations run by infra-db's runner.
//!
//! The SQL lives in `crates/infra-jobs/migrations/`, one diesel migration folder each, and
//! is recorded in diesel's `__diesel_schema_migrations` beside the app's own migrations.
//! Their versions start with `0000-00-00`, below any timestamped app migration, so they
//! neither collide with an app's versions nor become the "latest" migration an app's
//! `diesel migration revert` would look for. infra-db's runner serialises concurrent runs, so
//! several workers may start at once. Each statement is idempotent, so a database set up by
//! an earlier release (which tracked these migrations in `infra_jobs_migrations`) adopts
//! them without change.

use infra_core::Result;
use infra_db::Database;
use infra_db::diesel_migrations::{self, EmbeddedMigrations};

/// The queue's migrations (`crates/infra-jobs/migrations`).
pub(crate) const MIGRATIONS: EmbeddedMigrations =
    diesel_migrations::embed_migrations!("migrations");

/// Applies the queue's pending migrations; returns the versions applied.
pub(crate) async fn run_queue_migrations(db: &Database) -> Result<Vec<String>> {
    infra_db::run_pending_migrations(db, MIGRATIONS).await
}
