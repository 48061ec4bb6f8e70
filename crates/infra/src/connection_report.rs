//! The report of `Infra::check` and `Infra::check_ready`: one `HealthReport` per service.

use std::collections::BTreeMap;

use infra_core::{HealthReport, HealthStatus};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Every service's health, in a fixed order (database, cache, jobs, realtime, monitoring).
///
/// Serialises as one JSON object keyed by service, each entry carrying `ok` (the TypeScript
/// module's `{ database: true, redis: true, … }`) beside the full report.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionReport {
    /// One report per service built into this binary.
    pub services: Vec<HealthReport>,
}

impl ConnectionReport {
    /// The report of `service`.
    pub fn get(&self, service: &str) -> Option<&HealthReport> {
        self.services.iter().find(|r| r.service == service)
    }

    /// `true` when no configured service is unhealthy (not-configured ones don't count).
    pub fn all_ok(&self) -> bool {
        self.services
            .iter()
            .all(|r| r.status != HealthStatus::Unhealthy)
    }

    /// The TypeScript module's shape: service → usable.
    pub fn summary(&self) -> BTreeMap<String, bool> {
        self.services
            .iter()
            .map(|r| (r.service.clone(), r.is_ok()))
            .collect()
    }
}

impl Serialize for ConnectionReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Entry<'a> {
            ok: bool,
            #[serde(flatten)]
            report: &'a HealthReport,
        }
        let mut map = serializer.serialize_map(Some(self.services.len()))?;
        for report in &self.services {
            map.serialize_entry(
                &report.service,
                &Entry {
                    ok: report.is_ok(),
                    report,
                },
            )?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report(service: &str, status: HealthStatus) -> HealthReport {
        HealthReport {
            service: service.into(),
            backend: "x".into(),
            status,
            latency: Duration::from_millis(3),
            detail: String::new(),
        }
    }

    #[test]
    fn not_configured_does_not_fail_the_whole() {
        let r = ConnectionReport {
            services: vec![
                report("database", HealthStatus::NotConfigured),
                report("cache", HealthStatus::Healthy),
            ],
        };
        assert!(r.all_ok());
        assert!(!r.summary()["database"]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["cache"]["ok"], true);
        assert_eq!(json["cache"]["status"], "healthy");
        assert_eq!(json["database"]["status"], "not_configured");
    }

    #[test]
    fn unhealthy_fails_the_whole() {
        let r = ConnectionReport {
            services: vec![report("cache", HealthStatus::Unhealthy)],
        };
        assert!(!r.all_ok());
    }
}
