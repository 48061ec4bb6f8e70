//! `cargo xtask ci`: if it passes locally, CI is green.

use std::time::Instant;

use anyhow::Result;
use xshell::{Shell, cmd};

/// Crates checked alone, with and without default features.
const CRATES: [&str; 6] = [
    "infra-core",
    "infra-db",
    "infra-cache",
    "infra-jobs",
    "infra-realtime",
    "infra-monitoring",
];

/// Umbrella features checked alone.
const UMBRELLA_FEATURES: [&str; 9] = [
    "db",
    "cache",
    "jobs",
    "realtime",
    "realtime-redis",
    "monitoring",
    "http",
    "otel",
    "metrics",
];

pub fn run(args: &[String]) -> Result<bool> {
    if let Some(unknown) = args.first() {
        anyhow::bail!("ci: unknown argument `{unknown}`");
    }
    let sh = Shell::new()?;
    sh.change_dir(crate::project_root());
    let started = Instant::now();

    step("services", crate::services::ensure_running)?;
    step("fmt", || Ok(cmd!(sh, "cargo fmt --all -- --check").run()?))?;
    step("clippy", || {
        Ok(cmd!(
            sh,
            "cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings"
        )
        .run()?)
    })?;
    step("docs", || {
        let _flags = sh.push_env("RUSTDOCFLAGS", "-D warnings");
        Ok(cmd!(sh, "cargo doc --workspace --no-deps --all-features --quiet").run()?)
    })?;
    step("package", || crate::package_check::run(&sh))?;
    step("feature matrix", || {
        for krate in CRATES {
            cmd!(sh, "cargo check --quiet -p {krate} --no-default-features").run()?;
            cmd!(sh, "cargo check --quiet -p {krate}").run()?;
        }
        cmd!(sh, "cargo check --quiet -p infra --no-default-features").run()?;
        for feature in UMBRELLA_FEATURES {
            cmd!(
                sh,
                "cargo check --quiet -p infra --no-default-features --features {feature}"
            )
            .run()?;
        }
        cmd!(sh, "cargo check --quiet -p infra --features full").run()?;
        Ok(())
    })?;
    step("tests without default features", || {
        // What a user on `default-features = false` compiles: its unit tests and doctests.
        // Lib and doc tests only, to keep CI lean; the full suite runs below.
        for krate in CRATES.into_iter().chain(["infra"]) {
            cmd!(
                sh,
                "cargo test --quiet -p {krate} --no-default-features --lib"
            )
            .run()?;
            cmd!(
                sh,
                "cargo test --quiet -p {krate} --no-default-features --doc"
            )
            .run()?;
        }
        // The cache with its memory backend alone: a Redis URL must name what is missing.
        cmd!(
            sh,
            "cargo test --quiet -p infra-cache --no-default-features --features memory --lib"
        )
        .run()?;
        Ok(())
    })?;
    step("official clients", || install_compat_clients(&sh))?;
    step("tests", || {
        Ok(cmd!(sh, "cargo test --workspace --all-features").run()?)
    })?;
    // Every fault scenario (about a minute here): each breaks only what it started itself —
    // its own redis-server, temporary databases, its own worker and realtime processes. Run
    // through cargo, not in this process: the jobs scenario starts this binary as its worker,
    // and the steps above may have rebuilt (replaced) the file this process was started from.
    step("faults", || Ok(cmd!(sh, "cargo xtask faults").run()?))?;

    println!("\nci: all steps passed in {}s", started.elapsed().as_secs());
    Ok(true)
}

/// The protocol compatibility tests drive official SDKs (npm packages pinned by each
/// `tests/compat/package-lock.json`, PyPI packages pinned by each
/// `tests/compat/requirements.txt` into a `.venv` beside it), and the example's page serves
/// pusher-js from `examples/*/web`; install them so those tests run, never skip.
fn install_compat_clients(sh: &Shell) -> Result<()> {
    let root = crate::project_root();
    // The compatibility tests' official SDKs, and the example app's browser dependencies.
    let mut dirs = Vec::new();
    for (parent, child) in [("crates", "tests/compat"), ("examples", "web")] {
        for entry in std::fs::read_dir(root.join(parent))? {
            dirs.push(entry?.path().join(child));
        }
    }
    dirs.sort();
    for dir in dirs {
        if dir.join("package-lock.json").exists() {
            let _dir = sh.push_dir(&dir);
            cmd!(sh, "npm ci --no-audit --no-fund --loglevel=error")
                .run()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "npm ci in {} failed (are node and npm installed?): {e}",
                        dir.display()
                    )
                })?;
        }
        if dir.join("requirements.txt").exists() {
            let _dir = sh.push_dir(&dir);
            cmd!(sh, "python3 -m venv .venv").run().map_err(|e| {
                anyhow::anyhow!(
                    "python3 -m venv in {} failed (are python3 and python3-venv installed?): {e}",
                    dir.display()
                )
            })?;
            cmd!(
                sh,
                ".venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt"
            )
            .run()
            .map_err(|e| anyhow::anyhow!("pip install in {} failed: {e}", dir.display()))?;
        }
    }
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("\n== {name}");
    let started = Instant::now();
    let outcome = f();
    println!(
        "== {name}: {} in {}s",
        if outcome.is_ok() { "ok" } else { "FAILED" },
        started.elapsed().as_secs()
    );
    outcome
}
