//! `cargo xtask verify --json` prints a report that parses, one entry per service, and exits
//! by the health of the configured services.

use std::process::Command;

mod support;
use support::{TempDb, url_for};

fn verify(envs: &[(&str, String)]) -> (bool, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["verify", "--json"]);
    // Start from a known environment: no service variables but the ones given.
    for (key, _) in std::env::vars() {
        if [
            "DATABASE_",
            "REDIS_",
            "UPSTASH_",
            "INNGEST_",
            "PUSHER_",
            "SENTRY_",
            "NEXT_PUBLIC_",
            "INFRA_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
        {
            cmd.env_remove(key);
        }
    }
    // Empty values also keep a developer's `.env` (which never overrides) out of the test.
    for key in [
        "DATABASE_URL",
        "REDIS_URL",
        "UPSTASH_REDIS_REST_URL",
        "INNGEST_EVENT_KEY",
        "INNGEST_DEV",
        "PUSHER_APP_ID",
        "PUSHER_KEY",
        "PUSHER_SECRET",
        "SENTRY_DSN",
        "NEXT_PUBLIC_SENTRY_DSN",
    ] {
        cmd.env(key, "");
    }
    cmd.envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    let out = cmd.output().expect("run xtask");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

#[test]
fn json_report_has_one_entry_per_service_against_the_real_services() {
    let database = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let (ok, json) = verify(&[("DATABASE_URL", database), ("REDIS_URL", redis)]);
    let services = json.as_object().expect("an object keyed by service");
    let mut names: Vec<&String> = services.keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["cache", "database", "jobs", "monitoring", "realtime"]
    );
    for (name, entry) in services {
        for field in ["ok", "backend", "status", "latency_ms", "detail"] {
            assert!(entry.get(field).is_some(), "{name} lacks {field}: {entry}");
        }
    }
    assert_eq!(json["database"]["backend"], "postgres");
    // Healthy, or degraded when the shared database lacks the app's migrations: usable.
    assert_eq!(json["database"]["ok"], true, "{}", json["database"]);
    assert!(
        json["database"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("app migrations applied")),
        "the migration status is reported: {}",
        json["database"]
    );
    assert_eq!(json["cache"]["backend"], "redis");
    assert_eq!(json["cache"]["status"], "healthy", "{}", json["cache"]);
    assert!(ok, "exit code 0 when every configured service is healthy");
}

#[test]
fn an_unhealthy_configured_service_fails_the_exit_code() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, json) = verify(&[
        ("REDIS_URL", format!("redis://127.0.0.1:{closed}")),
        ("INFRA_HEALTH_TIMEOUT", "2s".into()),
    ]);
    assert_eq!(json["cache"]["status"], "unhealthy");
    assert_eq!(json["database"]["status"], "not_configured");
    assert!(!ok, "exit code is non-zero");
    // Each row that is not healthy ends with what fixes it.
    assert!(
        detail(&json, "cache").ends_with(" — check REDIS_URL"),
        "{}",
        json["cache"]
    );
    assert!(
        detail(&json, "database").ends_with("set DATABASE_URL"),
        "{}",
        json["database"]
    );
}

/// A service, its variables, and the fix its row must end with.
type Case = (&'static str, Vec<(&'static str, String)>, &'static str);

/// Each service's variables pointed at a port nobody listens on: that service is unhealthy,
/// says why, and the exit code is non-zero.
#[test]
fn every_service_pointed_at_a_closed_port_fails_loudly() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases: [Case; 5] = [
        (
            "database",
            vec![(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:{closed}/test"),
            )],
            "check DATABASE_URL",
        ),
        (
            "cache",
            vec![("REDIS_URL", format!("redis://127.0.0.1:{closed}"))],
            "check REDIS_URL",
        ),
        (
            "jobs",
            vec![
                ("INNGEST_EVENT_KEY", "test-key".into()),
                ("INNGEST_BASE_URL", format!("http://127.0.0.1:{closed}")),
            ],
            "check INNGEST_EVENT_KEY and INNGEST_BASE_URL",
        ),
        (
            "realtime",
            vec![
                ("PUSHER_APP_ID", "1".into()),
                ("PUSHER_KEY", "key".into()),
                ("PUSHER_SECRET", "secret".into()),
                ("PUSHER_HOST", "127.0.0.1".into()),
                ("PUSHER_PORT", closed.to_string()),
                ("PUSHER_USE_TLS", "false".into()),
            ],
            "check PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET and PUSHER_HOST",
        ),
        (
            "monitoring",
            vec![("SENTRY_DSN", format!("http://public@127.0.0.1:{closed}/1"))],
            "check SENTRY_DSN",
        ),
    ];
    for (service, mut envs, fix) in cases {
        envs.push(("INFRA_HEALTH_TIMEOUT", "3s".into()));
        let (ok, json) = verify(&envs);
        assert_eq!(
            json[service]["status"], "unhealthy",
            "{service} pointed at a closed port: {}",
            json[service]
        );
        assert!(
            !json[service]["detail"].as_str().unwrap_or("").is_empty(),
            "{service} says why: {}",
            json[service]
        );
        assert!(
            detail(&json, service).ends_with(&format!(" — {fix}")),
            "{service} names its fix, `{fix}`: {}",
            json[service]
        );
        assert!(!ok, "{service}: exit code is non-zero");
    }
}

fn detail<'a>(json: &'a serde_json::Value, service: &str) -> &'a str {
    json[service]["detail"].as_str().unwrap_or("")
}

/// A fresh clone with `.env` copied from `.env.example`: the database answers but the app's
/// tables are not there yet, so the one row that is not healthy is the database, degraded,
/// naming the command that fixes it.
#[test]
fn a_fresh_clone_is_told_to_run_the_migrations() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fresh = rt.block_on(TempDb::create("infra_xtask_verify_fresh"));
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let app_migrations = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/calendar-agent/migrations"),
    )
    .unwrap()
    .filter(|entry| entry.as_ref().unwrap().path().is_dir())
    .count();
    assert!(app_migrations > 0);
    let (ok, json) = verify(&[("DATABASE_URL", url_for(&fresh.name)), ("REDIS_URL", redis)]);
    assert_eq!(
        json["database"]["status"], "degraded",
        "{}",
        json["database"]
    );
    let database = detail(&json, "database");
    assert!(
        database.ends_with(&format!(
            "; 0 of {app_migrations} app migrations applied — run cargo xtask migrate"
        )),
        "{database}"
    );
    for service in ["cache", "jobs", "realtime", "monitoring"] {
        assert_eq!(json[service]["status"], "healthy", "{}", json[service]);
    }
    assert!(ok, "a degraded database is usable: exit code 0");
}
