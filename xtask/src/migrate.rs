//! `cargo xtask migrate [--status]`: the calendar agent's migrations and the job queue's.

use anyhow::{Context, Result};
use infra::Env;
use infra::db::{Database, migration_status, run_pending_migrations};
use infra::jobs::PgQueue;

pub fn run(args: &[String]) -> Result<bool> {
    let status_only = args.iter().any(|a| a == "--status");
    if let Some(unknown) = args.iter().find(|a| a.as_str() != "--status") {
        anyhow::bail!("migrate: unknown argument `{unknown}` (expected --status)");
    }
    crate::load_dotenv()?;
    let db =
        Database::from_env(&Env::process()).context("DATABASE_URL must point at PostgreSQL")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let app = calendar_agent::MIGRATIONS;
        if status_only {
            for m in migration_status(&db, app).await? {
                println!(
                    "app       {} {}",
                    if m.applied { "applied" } else { "pending" },
                    m.version
                );
            }
            return Ok(true);
        }
        let applied = run_pending_migrations(&db, app).await?;
        for version in &applied {
            println!("app       applied {version}");
        }
        let queue = PgQueue::new(db.clone()).migrate().await?;
        for version in &queue {
            println!("job queue applied {version}");
        }
        if applied.is_empty() && queue.is_empty() {
            println!("no pending migrations");
        }
        Ok(true)
    })
}
