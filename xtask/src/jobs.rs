//! `cargo xtask jobs stats|dead|replay`: the job queue's administration from a terminal, a
//! client of `infra_core::QueueAdmin` like any operator's tool.
//!
//! - `stats [--json]`: per function, jobs ready, scheduled, running and dead, and how long
//!   the oldest ready job has waited;
//! - `dead [--function F] [--limit N] [--json]`: dead letters, newest first (default 20);
//! - `replay <id>` or `replay --all [--function F]`: puts dead letters back in the queue, due
//!   now, from attempt 1.
//!
//! It reads `.env` like `verify` and needs the PostgreSQL queue (`DATABASE_URL`): the
//! in-memory queue lives inside the app's process, and Inngest keeps its runs in its own
//! dashboard.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use infra::Env;
use infra::core::{JobFilter, JobId, QueueAdmin, format_duration};
use infra::db::Database;
use infra::jobs::{JobsConfig, PgQueue};

const USAGE: &str = "usage: cargo xtask jobs stats [--json]
       cargo xtask jobs dead [--function F] [--limit N] [--json]
       cargo xtask jobs replay <id>
       cargo xtask jobs replay --all [--function F]";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Stats {
        json: bool,
    },
    Dead {
        filter: JobFilter,
        limit: usize,
        json: bool,
    },
    Replay(JobId),
    ReplayAll(JobFilter),
}

pub fn run(args: &[String]) -> Result<bool> {
    let command = parse(args)?;
    crate::load_dotenv()?;
    let admin = admin_from_env(&Env::process())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(execute(admin.as_ref(), command))?;
    Ok(true)
}

fn parse(args: &[String]) -> Result<Command> {
    let Some((task, rest)) = args.split_first() else {
        bail!("jobs: which task?\n{USAGE}");
    };
    let mut json = false;
    let mut all = false;
    let mut function = None;
    let mut limit = 20;
    let mut id = None;
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--json" if task != "replay" => json = true,
            "--all" if task == "replay" => all = true,
            "--function" if task != "stats" => {
                function = Some(
                    rest.next()
                        .context("--function needs a function id")?
                        .clone(),
                );
            }
            "--limit" if task == "dead" => {
                let n = rest.next().context("--limit needs a number")?;
                limit = n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--limit must be a positive number, got `{n}`"))?;
            }
            other if task == "replay" && id.is_none() && !other.starts_with('-') => {
                id = Some(other.parse::<JobId>().with_context(|| {
                    format!("replay: `{other}` is not a job id (a number, as `dead` lists)")
                })?);
            }
            other => bail!("jobs {task}: unexpected argument `{other}`\n{USAGE}"),
        }
    }
    let filter = function.map(JobFilter::function).unwrap_or_default();
    Ok(match (task.as_str(), id, all) {
        ("stats", ..) => Command::Stats { json },
        ("dead", ..) => Command::Dead {
            filter,
            limit,
            json,
        },
        ("replay", Some(id), false) if filter == JobFilter::all() => Command::Replay(id),
        ("replay", None, true) => Command::ReplayAll(filter),
        ("replay", ..) => {
            bail!("jobs replay: give one dead letter's id, or --all [--function F]\n{USAGE}")
        }
        (other, ..) => bail!("jobs: unknown task `{other}`\n{USAGE}"),
    })
}

/// The queue the environment names, as its administration.
fn admin_from_env(env: &Env) -> Result<Arc<dyn QueueAdmin>> {
    match JobsConfig::from_env(env)? {
        JobsConfig::Postgres => {
            let db = Database::from_env(env)?;
            Ok(Arc::new(PgQueue::new(db)))
        }
        JobsConfig::Inngest(_) => bail!(
            "the jobs run on Inngest, which keeps the runs: use its dashboard \
             (or set INFRA_JOBS_BACKEND=postgres to inspect a PostgreSQL queue)"
        ),
        _ => bail!(
            "the in-memory queue lives inside the app's process: set DATABASE_URL to inspect \
             the PostgreSQL queue"
        ),
    }
}

async fn execute(admin: &dyn QueueAdmin, command: Command) -> Result<()> {
    match command {
        Command::Stats { json } => {
            let stats = admin.stats().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else if stats.is_empty() {
                println!("no jobs");
            } else {
                println!(
                    "{:<32} {:>8} {:>10} {:>8} {:>6}  oldest ready",
                    "function", "ready", "scheduled", "running", "dead"
                );
                for s in stats {
                    let oldest = s
                        .oldest_ready_age_ms
                        .map(|ms| format_duration(Duration::from_millis(ms)))
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:<32} {:>8} {:>10} {:>8} {:>6}  {oldest}",
                        s.function_id, s.ready, s.scheduled, s.running, s.dead
                    );
                }
            }
        }
        Command::Dead {
            filter,
            limit,
            json,
        } => {
            let dead = admin.dead_letters(&filter, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&dead)?);
            } else if dead.is_empty() {
                println!("no dead letters");
            } else {
                let now = now_ms();
                for d in dead {
                    let ago = Duration::from_millis((now - d.failed_at_ms).max(0) as u64);
                    println!(
                        "{:>10}  {}  {} ago, {} attempt(s), event {}: {}",
                        d.id,
                        d.function_id,
                        format_duration(ago),
                        d.attempts,
                        d.event.name,
                        d.error
                    );
                }
            }
        }
        Command::Replay(id) => {
            admin.replay(id).await?;
            println!("replayed dead letter {id}");
        }
        Command::ReplayAll(filter) => {
            let n = admin.replay_all(&filter).await?;
            match &filter.function_id {
                Some(f) => println!("replayed {n} dead letter(s) of {f}"),
                None => println!("replayed {n} dead letter(s)"),
            }
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_each_task_and_refuses_the_rest() {
        assert_eq!(
            parse(&args("stats --json")).unwrap(),
            Command::Stats { json: true }
        );
        assert_eq!(
            parse(&args("dead --function sync --limit 5")).unwrap(),
            Command::Dead {
                filter: JobFilter::function("sync"),
                limit: 5,
                json: false
            }
        );
        assert_eq!(parse(&args("replay 42")).unwrap(), Command::Replay(42));
        assert_eq!(
            parse(&args("replay --all --function sync")).unwrap(),
            Command::ReplayAll(JobFilter::function("sync"))
        );
        assert_eq!(
            parse(&args("replay --all")).unwrap(),
            Command::ReplayAll(JobFilter::all())
        );
        for bad in [
            "",
            "purge",
            "replay",
            "replay 1 --all",
            "replay 1 --function sync",
            "replay x",
            "stats --function sync",
            "dead --limit 0",
            "dead --limit",
            "dead 7",
        ] {
            assert!(parse(&args(bad)).is_err(), "`{bad}` is refused");
        }
    }
}
