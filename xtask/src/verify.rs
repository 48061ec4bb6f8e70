//! `cargo xtask verify [--json]`: one report with a line per service.

use anyhow::Result;
use infra::core::format_duration;
use infra::{Env, HealthStatus, Infra};

pub fn run(args: &[String]) -> Result<bool> {
    let json = args.iter().any(|a| a == "--json");
    if let Some(unknown) = args.iter().find(|a| a.as_str() != "--json") {
        anyhow::bail!("verify: unknown argument `{unknown}` (expected --json)");
    }
    crate::load_dotenv()?;
    let infra = Infra::from_env(&Env::process())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        // The jobs probe is run by a worker: start them, as an app does.
        let started = infra.start().await;
        let mut report = infra.check().await;
        // The embedded realtime server proves itself to a real WebSocket subscriber.
        if let Some(realtime) = crate::realtime_probe::probe(&infra, infra.health_deadline()).await
            && let Some(slot) = report.services.iter_mut().find(|r| r.service == "realtime")
        {
            *slot = realtime;
        }
        // The database reports its schema too: the app's migrations and whether they ran.
        if let Some(db) = infra.database()
            && let Some(slot) = report.services.iter_mut().find(|r| r.service == "database")
        {
            annotate_migrations(slot, db).await;
        }
        if let Err(err) = started
            && let Some(jobs) = report.services.iter_mut().find(|r| r.service == "jobs")
        {
            jobs.status = infra::HealthStatus::Unhealthy;
            jobs.detail = format!("the runtime did not start: {err}");
        }
        let metrics = metrics_line(&infra).await;
        infra.shutdown().await;
        // Every row that is not healthy ends with the command or variable that fixes it.
        for row in &mut report.services {
            crate::next_step::annotate(row);
        }
        (report, metrics)
    });
    let (report, metrics) = report;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        if let Some(line) = metrics {
            eprintln!("{line}");
        }
    } else {
        print_table(&report);
        if let Some(line) = metrics {
            println!("{line}");
        }
    }
    Ok(report.all_ok())
}

/// With `INFRA_METRICS_ADDR` set: where `GET /metrics` is served and how many series one
/// scrape of it returned (or why it is not served).
async fn metrics_line(infra: &Infra) -> Option<String> {
    let config = infra.metrics_config();
    config.addr?;
    infra.record_metrics().await;
    let Some(addr) = infra.metrics_addr() else {
        return Some(format!(
            "metrics: not served ({} did not start; see above)",
            infra::core::METRICS_ADDR_VAR
        ));
    };
    let url = format!("http://{addr}/metrics");
    Some(match scrape(addr).await {
        Ok(series) => format!(
            "metrics: {url} ({series} series; gauges refreshed every {})",
            format_duration(config.interval)
        ),
        Err(err) => format!("metrics: {url} does not answer: {err}"),
    })
}

/// One plain HTTP/1.0 `GET /metrics`: the number of sample lines in the answer.
async fn scrape(addr: std::net::SocketAddr) -> std::io::Result<usize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let Some((head, body)) = answer.split_once("\r\n\r\n") else {
        return Err(std::io::Error::other("no HTTP answer"));
    };
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "answered {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count())
}

async fn annotate_migrations(report: &mut infra::HealthReport, db: &infra::db::Database) {
    if report.status != HealthStatus::Healthy {
        return;
    }
    match infra::db::migration_status(db, calendar_agent::MIGRATIONS).await {
        Ok(all) => {
            let applied = all.iter().filter(|m| m.applied).count();
            report.detail = format!(
                "{}; {applied} of {} app migrations applied",
                report.detail,
                all.len()
            );
            if applied < all.len() {
                // Usable, but the app's tables are behind: `cargo xtask migrate` (the row's
                // next step, which `next_step::annotate` appends).
                report.status = HealthStatus::Degraded;
            }
        }
        Err(err) => {
            report.status = HealthStatus::Unhealthy;
            report.detail = format!("{}; migration status failed: {err}", report.detail);
        }
    }
}

fn print_table(report: &infra::ConnectionReport) {
    println!(
        "{:<11} {:<13} {:<15} {:>9}  detail",
        "service", "backend", "status", "latency"
    );
    for r in &report.services {
        let mark = match r.status {
            HealthStatus::Healthy => "ok",
            HealthStatus::Degraded => "~",
            HealthStatus::Unhealthy => "FAIL",
            HealthStatus::NotConfigured => "-",
        };
        println!(
            "{:<11} {:<13} {:<15} {:>9}  {}",
            r.service,
            r.backend,
            format!("{mark} {}", r.status),
            format_duration(r.latency),
            r.detail
        );
    }
    if report.all_ok() {
        println!("\nall configured services answered");
    } else {
        println!("\nsome configured service is unhealthy");
    }
}
