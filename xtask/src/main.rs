//! `cargo xtask <task>`: the project's automation, in plain Rust.
//!
//! - `verify [--json]`: probe every configured service end to end (the main command)
//! - `ci`: everything CI checks — fmt, clippy, docs, the feature matrix, services, tests
//! - `bench [crate]`: the benchmarks, each printing our side, the baseline and the ratio
//! - `migrate [--status]`: apply pending database migrations, or list them

mod bench;
mod ci;
mod migrate;
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
  ci                  fmt, clippy, docs, feature matrix, services, tests
  bench [crate]       run the benchmarks (all, or one crate: db, cache, jobs, monitoring)
  migrate [--status]  apply pending database migrations, or list applied/pending";

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
