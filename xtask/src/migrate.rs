//! `cargo xtask migrate [--status]`: the embedded diesel migrations.

use anyhow::{Context, Result};
use infra::Env;
use infra::db::{Database, migration_status, run_pending_migrations};

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
        if status_only {
            for m in migration_status(&db).await? {
                println!(
                    "{} {}",
                    if m.applied { "applied" } else { "pending" },
                    m.version
                );
            }
        } else {
            let applied = run_pending_migrations(&db).await?;
            if applied.is_empty() {
                println!("no pending migrations");
            }
            for version in applied {
                println!("applied {version}");
            }
        }
        Ok(true)
    })
}
