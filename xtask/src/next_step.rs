//! What `verify` tells a developer to do about a row that is not healthy: every degraded,
//! unhealthy or not-configured row ends with the command to run or the variable to set or
//! check, so a first run on a fresh clone says what comes next.

use infra::{HealthReport, HealthStatus};

/// The separator between a row's detail and its next step.
pub const SEPARATOR: &str = " — ";

/// The command `verify` names for an app schema that is behind.
pub const MIGRATE: &str = "run cargo xtask migrate";

/// Appends the next step to `report`'s detail, unless it is healthy or already ends with it.
pub fn annotate(report: &mut HealthReport) {
    let Some(step) = next_step(report) else {
        return;
    };
    if !report.detail.ends_with(&step) {
        report.detail = if report.detail.is_empty() {
            step
        } else {
            format!("{}{SEPARATOR}{step}", report.detail)
        };
    }
}

/// The command or variable that fixes `report`'s service, or `None` when it is healthy.
///
/// The variables are each backend's own (`.env.example` lists them); a degraded service
/// names what its caveat comes from.
pub fn next_step(report: &HealthReport) -> Option<String> {
    let service = report.service.as_str();
    let backend = report.backend.as_str();
    let step = match report.status {
        HealthStatus::Healthy => return None,
        HealthStatus::NotConfigured => match service {
            "database" => "set DATABASE_URL",
            _ => "set its variables (.env.example lists them)",
        },
        HealthStatus::Degraded => match (service, backend) {
            ("database", _) if report.detail.contains("app migrations applied") => MIGRATE,
            ("database", _) => "check DATABASE_REPLICA_URLS",
            ("cache", "redis-cluster") => "check REDIS_CLUSTER_NODES",
            ("jobs", _) if report.detail.contains("workers not started") => {
                "start the workers (Infra::start)"
            }
            ("jobs", _) => "run cargo xtask jobs dead",
            ("realtime", _) => "check INFRA_REALTIME_REDIS_URL",
            ("monitoring", _) => "check the quota of SENTRY_DSN",
            _ => "set its variables (.env.example lists them)",
        },
        HealthStatus::Unhealthy => match (service, backend) {
            ("database", _) | ("jobs", "postgres") => "check DATABASE_URL",
            ("cache", "redis") => "check REDIS_URL",
            ("cache", "redis-cluster") => "check REDIS_CLUSTER_NODES",
            ("cache", "upstash") => "check UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN",
            ("jobs", "inngest") => "check INNGEST_EVENT_KEY and INNGEST_BASE_URL",
            ("jobs", _) => "check INFRA_JOBS_BACKEND",
            ("realtime", "pusher") => {
                "check PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET and PUSHER_HOST"
            }
            ("realtime", _) => "check INFRA_REALTIME_REDIS_URL",
            ("monitoring", "sentry") => "check SENTRY_DSN",
            ("monitoring", _) => "check INFRA_MONITORING_LOG_FILE",
            _ => "set its variables (.env.example lists them)",
        },
    };
    Some(step.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(service: &str, backend: &str, status: HealthStatus, detail: &str) -> HealthReport {
        HealthReport {
            service: service.into(),
            backend: backend.into(),
            status,
            latency: Duration::ZERO,
            detail: detail.into(),
        }
    }

    #[test]
    fn healthy_rows_are_left_alone() {
        let mut report = row("cache", "redis", HealthStatus::Healthy, "redis 7.2");
        annotate(&mut report);
        assert_eq!(report.detail, "redis 7.2");
    }

    #[test]
    fn pending_migrations_name_the_migrate_command() {
        let mut report = row(
            "database",
            "postgres",
            HealthStatus::Degraded,
            "postgres 17; 0 of 1 app migrations applied",
        );
        annotate(&mut report);
        assert_eq!(
            report.detail,
            "postgres 17; 0 of 1 app migrations applied — run cargo xtask migrate"
        );
        // Annotating twice adds nothing.
        annotate(&mut report);
        assert!(!report.detail.ends_with("migrate — run cargo xtask migrate"));
    }

    #[test]
    fn every_other_row_ends_with_a_variable_or_a_command() {
        for status in [
            HealthStatus::Degraded,
            HealthStatus::Unhealthy,
            HealthStatus::NotConfigured,
        ] {
            for (service, backend) in [
                ("database", "postgres"),
                ("database", "none"),
                ("cache", "redis"),
                ("cache", "redis-cluster"),
                ("cache", "upstash"),
                ("cache", "memory"),
                ("jobs", "memory"),
                ("jobs", "postgres"),
                ("jobs", "inngest"),
                ("realtime", "local"),
                ("realtime", "pusher"),
                ("monitoring", "local"),
                ("monitoring", "sentry"),
            ] {
                let mut report = row(service, backend, status, "what the check saw");
                annotate(&mut report);
                let (_, step) = report
                    .detail
                    .split_once(SEPARATOR)
                    .unwrap_or_else(|| panic!("{service}/{backend} {status}: {}", report.detail));
                let last = step.rsplit(' ').next().unwrap();
                assert!(
                    step.starts_with("run cargo xtask")
                        || last.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                        || last == "(Infra::start)"
                        || step.ends_with("(.env.example lists them)"),
                    "{service}/{backend} {status}: `{step}` names no command or variable"
                );
            }
        }
    }
}
