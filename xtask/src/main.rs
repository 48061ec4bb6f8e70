//! `cargo xtask <task>`: the project's automation, in plain Rust.
//!
//! - `verify [--json]`: probe every configured service end to end (the main command)
//! - `ci`: everything CI checks — fmt, clippy, docs, packaging, the feature matrix, services,
//!   tests
//! - `bench [crate…] [--quick] [--write-docs]`: every benchmark, then one table of our figures,
//!   the strongest baselines and the ratios (`--write-docs` updates `docs/performance.md`)
//! - `migrate [--status]`: apply pending database migrations, or list them
//! - `jobs stats|dead|replay …`: the job queue's counts, dead letters and replay
//! - `faults [scenario…] [--record]`: break services under load, report losses and recovery

mod bench;
mod ci;
mod faults;
mod jobs;
mod migrate;
mod next_step;
mod package_check;
mod realtime_probe;
mod services;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let outcome = match task {
        "verify" => verify::run(rest),
        "ci" => ci::run(rest),
        "bench" => bench::run(rest),
        "migrate" => migrate::run(rest),
        "jobs" => jobs::run(rest),
        "faults" => faults::run(rest),
        // Hidden: the worker process the `jobs` fault scenario starts and SIGKILLs.
        "faults-jobs-worker" => faults::jobs::worker(rest),
        "help" | "--help" | "-h" => {
            println!("{}", USAGE);
            Ok(true)
        }
        other => {
            eprintln!("unknown task `{other}`\n\n{USAGE}");
            Ok(false)
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  verify [--json]     probe every configured service (loads .env if present)
  ci                  fmt, clippy, docs, packaging, feature matrix, services, tests
  bench [crate…] [--quick] [--write-docs]
                      run the benchmarks (all, or some crates: db, cache, jobs, realtime,
                      monitoring) and print one table of figures, baselines, ratios and goals;
                      --quick shortens every workload (plumbing only, not figures);
                      --write-docs records the table and the machine in docs/performance.md
  migrate [--status]  apply pending database migrations, or list applied/pending
  jobs stats [--json] | dead [--function F] [--limit N] [--json]
     | replay <id> | replay --all [--function F]
                      the job queue (PostgreSQL): counts per function, dead letters,
                      replay of one or all (loads .env if present)
  faults [scenario] [--record]
                      kill services under load; report what was lost and the recovery
                      time (--record updates docs/reliability.md)";

/// The workspace root, from this crate's manifest directory.
fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Loads `.env` from the workspace root when present; the libraries never do this.
fn load_dotenv() -> anyhow::Result<()> {
    let path = project_root().join(".env");
    if path.exists() {
        dotenvy::from_path(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Replaces the text between `<!-- {marker} -->` and `<!-- /{marker} -->` in the workspace
/// file `path` with `body`: the latest figures live in the docs, written by the task that
/// measured them.
fn record_in_doc(path: &str, marker: &str, body: &str) -> anyhow::Result<()> {
    let path = project_root().join(path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let (open, close) = (format!("<!-- {marker} -->"), format!("<!-- /{marker} -->"));
    let (Some(start), Some(end)) = (text.find(&open), text.find(&close)) else {
        anyhow::bail!("{} has no {open} … {close} markers", path.display());
    };
    let head = &text[..start + open.len()];
    let tail = &text[end..];
    std::fs::write(&path, format!("{head}\n{body}{tail}"))?;
    Ok(())
}
