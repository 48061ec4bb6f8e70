//! `cargo xtask bench [crate…] [--quick] [--write-docs]`: each benchmark runs our code and a
//! raw baseline side by side and prints the ratio; this task then prints one table of every
//! figure of the run.
//!
//! Each benchmark appends its rows (`infra_core::testkit::bench_report`: crate, workload, our
//! figure and unit, the strongest raw baseline of the same run, the ratio, p50/p99, the goal)
//! as JSON lines to the file this task names in `INFRA_BENCH_REPORT`, under the target
//! directory. `--write-docs` rewrites the table of `docs/performance.md` with the machine the
//! figures came from; `--quick` asks every benchmark for a short run that proves the plumbing,
//! not the figures.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use infra::core::testkit::bench_report::{self, QUICK_ENV, REPORT_ENV, Row};
use xshell::{Shell, cmd};

/// Crates with benchmarks.
const BENCHED: [&str; 5] = [
    "infra-db",
    "infra-cache",
    "infra-jobs",
    "infra-monitoring",
    "infra-realtime",
];

/// Jobs the jobs benchmark drains in a quick run (50,000 otherwise).
const QUICK_JOBS: &str = "5000";

/// The command that regenerates the table in the docs.
const REPRODUCE: &str = "cargo xtask bench --write-docs";

pub fn run(args: &[String]) -> Result<bool> {
    let mut quick = false;
    let mut write_docs = false;
    let mut chosen: Vec<&str> = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--write-docs" => write_docs = true,
            flag if flag.starts_with('-') => {
                bail!("bench: unknown flag `{flag}` (have: --quick, --write-docs)")
            }
            name => chosen.push(benched_crate(name)?),
        }
    }
    if write_docs && !chosen.is_empty() {
        bail!(
            "bench: --write-docs records one run of every crate's benchmark; run it without a crate"
        );
    }
    if chosen.is_empty() {
        chosen = BENCHED.to_vec();
    }
    crate::load_dotenv()?;

    let report = target_dir().join("bench-report").join("rows.jsonl");
    if report.exists() {
        std::fs::remove_file(&report)
            .with_context(|| format!("cannot remove the last run's {}", report.display()))?;
    }
    let sh = Shell::new()?;
    sh.change_dir(crate::project_root());
    let _report = sh.push_env(REPORT_ENV, &report);
    let _quick = quick.then(|| sh.push_env(QUICK_ENV, "1"));
    let _jobs = (quick && std::env::var_os("INFRA_JOBS_BENCH_JOBS").is_none())
        .then(|| sh.push_env("INFRA_JOBS_BENCH_JOBS", QUICK_JOBS));
    let load_before = load_average();

    let mut failed = Vec::new();
    for krate in &chosen {
        println!("\n== cargo bench -p {krate}");
        if *krate == "infra-jobs" {
            // The graphile-worker baseline runs from its committed lock file; without it the
            // benchmark says it skipped graphile and the other rows still come.
            let dir = crate::project_root().join("crates/infra-jobs/benches/graphile");
            let _dir = sh.push_dir(dir);
            if let Err(err) = cmd!(sh, "npm ci --no-audit --no-fund --loglevel=error").run() {
                eprintln!("bench: npm ci for the graphile-worker baseline failed: {err}");
            }
        }
        if let Err(err) = cmd!(sh, "cargo bench -p {krate} --all-features").run() {
            eprintln!("bench: {krate} failed: {err}");
            failed.push(*krate);
        }
    }

    let rows = if report.exists() {
        bench_report::read(&report)?
    } else {
        Vec::new()
    };
    for krate in &chosen {
        if !failed.contains(krate) && !rows.iter().any(|r| r.krate == *krate) {
            eprintln!("bench: {krate} ran but reported no rows");
            failed.push(*krate);
        }
    }
    let table = bench_report::markdown_table(&rows);
    println!("\n{table}");
    println!("rows: {}", report.display());
    if !failed.is_empty() {
        eprintln!("bench: no complete figures from {}", failed.join(", "));
    }

    if write_docs {
        if !failed.is_empty() {
            bail!("bench: not writing docs/performance.md from a partial run");
        }
        let machine = Machine::describe(load_before)?;
        crate::record_in_doc(
            "docs/performance.md",
            "bench-table",
            &docs_section(&machine, &rows, quick),
        )?;
        println!("recorded in docs/performance.md");
    }
    Ok(failed.is_empty())
}

/// `db`, `infra-db` → `infra-db`, if it has benchmarks.
fn benched_crate(name: &str) -> Result<&'static str> {
    let full = if name.starts_with("infra-") {
        name.to_owned()
    } else {
        format!("infra-{name}")
    };
    match BENCHED.iter().find(|c| **c == full) {
        Some(c) => Ok(c),
        None => {
            bail!("bench: no benchmarks in `{name}` (have: db, cache, jobs, monitoring, realtime)")
        }
    }
}

/// The build's target directory: `CARGO_TARGET_DIR` when set, else the workspace's `target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("target"))
}

/// The table's section of `docs/performance.md`: where and when, the table, how to redo it.
fn docs_section(machine: &Machine, rows: &[Row], quick: bool) -> String {
    let mut out = format!(
        "Measured {} on {} ({} cores, {} memory), Linux {}; load average {} at the start and \
         {} at the end; PostgreSQL {}, Redis {}; {}.\n",
        machine.date,
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.kernel,
        machine.load_before,
        machine.load_after,
        machine.postgres,
        machine.redis,
        machine.rustc,
    );
    if quick {
        out.push_str(
            "\n**Quick run** (`--quick`): shortened workloads that prove the plumbing; these are \
             not figures to compare.\n",
        );
    }
    out.push_str(&format!("\nReproduce: `{REPRODUCE}`.\n\n"));
    out.push_str(&bench_report::markdown_table(rows));
    out
}

/// Where the figures came from.
struct Machine {
    date: String,
    cpu: String,
    cores: usize,
    memory: String,
    kernel: String,
    load_before: String,
    load_after: String,
    postgres: String,
    redis: String,
    rustc: String,
}

impl Machine {
    fn describe(load_before: String) -> Result<Machine> {
        let sh = Shell::new()?;
        sh.change_dir(crate::project_root());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let memory = field(&meminfo, "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(
                || "unknown".to_owned(),
                |kib| format!("{:.0} GiB", kib / (1024.0 * 1024.0)),
            );
        Ok(Machine {
            date: cmd!(sh, "date -u +%Y-%m-%dT%H:%MZ")
                .read()
                .unwrap_or_else(|_| "unknown date".into()),
            cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".into()),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            load_before,
            load_after: load_average(),
            postgres: postgres_version().unwrap_or_else(|e| format!("unknown ({e:#})")),
            redis: redis_version().unwrap_or_else(|e| format!("unknown ({e:#})")),
            rustc: cmd!(sh, "rustc -V")
                .read()
                .unwrap_or_else(|_| "rustc unknown".into()),
        })
    }
}

/// The 1-, 5- and 15-minute load averages, `1.02 / 0.80 / 0.55`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_else(|| "unknown".into())
}

/// `SHOW server_version` on `DATABASE_URL`.
fn postgres_version() -> Result<String> {
    use infra::db::diesel;
    use infra::db::diesel::sql_types::Text;
    use infra::db::diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        server_version: String,
    }
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut conn =
            tokio::time::timeout(Duration::from_secs(5), AsyncPgConnection::establish(&url))
                .await??;
        let version: Version = diesel::sql_query("SHOW server_version")
            .get_result(&mut conn)
            .await?;
        Ok(version.server_version)
    })
}

/// `redis_version` of `INFO server` on `REDIS_URL`, over a plain RESP exchange.
fn redis_version() -> Result<String> {
    use std::io::{Read, Write};

    let raw = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let url = url::Url::parse(&raw).context("REDIS_URL is not a URL")?;
    let host = url.host_str().context("REDIS_URL has no host")?;
    let port = url.port().unwrap_or(6379);
    let address = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .context("REDIS_URL's host does not resolve")?;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
    let mut request = String::new();
    if let Some(password) = url.password() {
        let user = Some(url.username()).filter(|u| !u.is_empty());
        let args: Vec<&str> = user.into_iter().chain([password]).collect();
        request.push_str(&format!("*{}\r\n{}", args.len() + 1, bulk("AUTH")));
        for arg in args {
            request.push_str(&bulk(arg));
        }
    }
    request.push_str(&format!("*2\r\n{}{}", bulk("INFO"), bulk("server")));
    stream.write_all(request.as_bytes())?;
    let mut reply = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.push_str(&String::from_utf8_lossy(&buf[..n]));
        if reply.starts_with('-') {
            bail!("{}", reply.trim());
        }
        if let Some(start) = reply.find("redis_version:") {
            let rest = &reply[start + "redis_version:".len()..];
            if let Some(end) = rest.find("\r\n") {
                return Ok(rest[..end].trim().to_owned());
            }
        }
    }
    bail!("no redis_version in INFO server")
}
