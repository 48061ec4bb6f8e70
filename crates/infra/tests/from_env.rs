//! `Infra::from_env` picks backends by the variables set, and `Infra::check`
//! reports every service against the real local PostgreSQL and Redis.
#![cfg(all(
    feature = "db",
    feature = "cache",
    feature = "jobs",
    feature = "realtime",
    feature = "monitoring"
))]

use std::time::{Duration, Instant};

use infra::{Env, ErrorKind, HealthStatus, Infra};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn without_variables_every_service_uses_its_embedded_default() {
    let infra = Infra::from_env(&Env::empty()).unwrap();
    infra.start().await.unwrap();
    let report = infra.check().await;
    let names: Vec<&str> = report.services.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(
        names,
        ["database", "cache", "jobs", "realtime", "monitoring"]
    );
    assert_eq!(
        report.get("database").unwrap().status,
        HealthStatus::NotConfigured
    );
    for (service, backend) in [
        ("cache", "memory"),
        ("jobs", "memory"),
        ("realtime", "local"),
        ("monitoring", "local"),
    ] {
        let r = report.get(service).unwrap();
        assert_eq!(r.backend, backend, "{service}");
        assert_eq!(r.status, HealthStatus::Healthy, "{service}: {}", r.detail);
    }
    assert!(report.all_ok());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json.as_object().unwrap().len(), 5);
    assert_eq!(json["database"]["ok"], false);
}

#[tokio::test]
async fn with_variables_the_real_services_are_used_and_answer() {
    let env = Env::from_pairs([("DATABASE_URL", database_url()), ("REDIS_URL", redis_url())]);
    let infra = Infra::from_env(&env).unwrap();
    infra.start().await.unwrap();
    let report = infra.check().await;
    let db = report.get("database").unwrap();
    assert_eq!(
        (db.backend.as_str(), db.status),
        ("postgres", HealthStatus::Healthy),
        "{}",
        db.detail
    );
    let cache = report.get("cache").unwrap();
    assert_eq!(
        (cache.backend.as_str(), cache.status),
        ("redis", HealthStatus::Healthy),
        "{}",
        cache.detail
    );
    let jobs = report.get("jobs").unwrap();
    assert_eq!(
        (jobs.backend.as_str(), jobs.status),
        ("postgres", HealthStatus::Healthy),
        "{}",
        jobs.detail
    );
    assert!(report.all_ok(), "{report:?}");
    infra.shutdown().await;
    assert!(report.summary()["database"]);
    assert!(report.summary()["cache"]);
}

#[tokio::test]
async fn the_postgres_job_queue_shares_the_databases_pool() {
    let env = Env::from_pairs([("DATABASE_URL", database_url())]);
    let infra = Infra::from_env(&env).unwrap();
    assert_eq!(infra.jobs().backend(), "postgres");
    let pool = infra.database().unwrap().pool();
    assert_eq!(pool.status().size, 0, "building never connects");
    // The queue's stats come from a pooled connection: it is the app's pool that opens one.
    infra.jobs().stats().await.unwrap();
    assert!(pool.status().size >= 1, "the queue used the app's pool");
}

#[tokio::test]
async fn unreachable_services_are_unhealthy_within_the_deadline() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = Env::from_pairs([
        (
            "DATABASE_URL",
            format!("postgres://postgres:pw-should-not-print@127.0.0.1:{closed}/x"),
        ),
        ("REDIS_URL", format!("redis://127.0.0.1:{closed}")),
        ("INFRA_HEALTH_TIMEOUT", "2s".into()),
    ]);
    let infra = Infra::from_env(&env).unwrap();
    let started = Instant::now();
    let report = infra.check().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        report.get("database").unwrap().status,
        HealthStatus::Unhealthy
    );
    assert_eq!(report.get("cache").unwrap().status, HealthStatus::Unhealthy);
    assert!(!report.all_ok());
    let printed = serde_json::to_string(&report).unwrap();
    assert!(!printed.contains("pw-should-not-print"), "{printed}");
}

/// `INFRA_HEALTH_TIMEOUT` bounds every check, whatever the service's own deadline (5 s for
/// the database): a server that accepts and never answers is reported at the umbrella's
/// deadline, by the full check and by readiness alike.
#[tokio::test]
async fn the_umbrella_deadline_bounds_a_silent_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let env = Env::from_pairs([
        (
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{port}/x"),
        ),
        ("DATABASE_CONNECT_TIMEOUT", "60s".into()),
        ("DATABASE_ACQUIRE_TIMEOUT", "60s".into()),
        ("INFRA_HEALTH_TIMEOUT", "1s".into()),
    ]);
    let infra = Infra::from_env(&env).unwrap();
    for report in [infra.check().await, infra.check_ready().await] {
        let database = report.get("database").unwrap();
        assert_eq!(database.status, HealthStatus::Unhealthy);
        assert_eq!(
            (database.backend.as_str(), database.detail.as_str()),
            ("postgres", "timed out after 1s")
        );
    }
    holder.abort();
}

#[test]
fn malformed_variables_are_named() {
    for (var, value) in [
        ("INFRA_HEALTH_TIMEOUT", "soon"),
        ("DATABASE_URL", "mysql://root@localhost/db"),
        ("REDIS_URL", "not a url"),
        ("INNGEST_BASE_URL", "::"),
        ("PUSHER_APP_ID", "1"),
        ("INFRA_METRICS_ADDR", "localhost"),
        ("INFRA_METRICS_INTERVAL", "10ms"),
    ] {
        let mut pairs = vec![(var.to_string(), value.to_string())];
        if var == "INNGEST_BASE_URL" {
            pairs.push(("INNGEST_EVENT_KEY".into(), "k".into()));
        }
        let err = Infra::from_env(&Env::from_pairs(pairs))
            .err()
            .unwrap_or_else(|| panic!("{var} accepted"));
        assert_eq!(err.kind(), ErrorKind::Config, "{var}: {err}");
        assert!(err.variable().is_some(), "{var}: {err}");
        if var != "PUSHER_APP_ID" {
            assert_eq!(err.variable(), Some(var), "{err}");
        }
    }
}
