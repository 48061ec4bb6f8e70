//! `cargo xtask bench [crate]`: each benchmark runs our code and a raw baseline side by side
//! and prints the ratio.

use anyhow::Result;
use xshell::{Shell, cmd};

/// Crates with benchmarks.
const BENCHED: [&str; 4] = ["infra-db", "infra-cache", "infra-jobs", "infra-monitoring"];

pub fn run(args: &[String]) -> Result<bool> {
    let sh = Shell::new()?;
    sh.change_dir(crate::project_root());
    let chosen: Vec<&str> = match args.first() {
        None => BENCHED.to_vec(),
        Some(name) => {
            let full = if name.starts_with("infra-") {
                name.clone()
            } else {
                format!("infra-{name}")
            };
            match BENCHED.iter().find(|c| **c == full) {
                Some(c) => vec![*c],
                None => {
                    anyhow::bail!(
                        "bench: no benchmarks in `{name}` (have: db, cache, jobs, monitoring)"
                    )
                }
            }
        }
    };
    for krate in chosen {
        if krate == "infra-jobs" {
            // The graphile-worker baseline runs from its committed lock file.
            let dir = crate::project_root().join("crates/infra-jobs/benches/graphile");
            let _dir = sh.push_dir(dir);
            cmd!(sh, "npm ci --no-audit --no-fund").run()?;
        }
        cmd!(sh, "cargo bench -p {krate} --all-features").run()?;
    }
    Ok(true)
}
