//! A cron check-in in the shape of Sentry's `check_in` envelope item, shared by both
//! backends: Sentry receives it, the local sink writes it as it would have been sent.

use infra_core::{CheckInStatus, CronCheckIn};
use serde::Serialize;

/// How late (minutes) a fire may check in before Sentry calls it missed.
const CHECKIN_MARGIN_MINUTES: u64 = 1;

/// Sentry's `check_in` item body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckInPayload {
    /// One id per fire (see [`check_in_id`]).
    pub(crate) check_in_id: String,
    pub(crate) monitor_slug: String,
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) environment: Option<String>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duration: Option<f64>,
    /// The monitor's upsert; absent when the schedule has no crontab form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) monitor_config: Option<MonitorConfigPayload>,
}

/// Sentry's `monitor_config`: the monitor is created or updated from it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MonitorConfigPayload {
    pub(crate) schedule: SchedulePayload,
    pub(crate) checkin_margin: u64,
    pub(crate) max_runtime: u64,
    pub(crate) timezone: &'static str,
}

/// A crontab schedule.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SchedulePayload {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) value: String,
}

impl CheckInPayload {
    pub(crate) fn new(check_in: &CronCheckIn, environment: &str) -> Self {
        CheckInPayload {
            check_in_id: check_in_id(&check_in.fire_key),
            monitor_slug: monitor_slug(&check_in.function_id),
            status: match check_in.status {
                CheckInStatus::InProgress => "in_progress",
                CheckInStatus::Ok => "ok",
                CheckInStatus::Error => "error",
            },
            environment: Some(environment.to_owned()).filter(|e| !e.is_empty()),
            duration: check_in.duration.map(|d| d.as_secs_f64()),
            monitor_config: crontab(&check_in.schedule).map(|value| MonitorConfigPayload {
                schedule: SchedulePayload {
                    kind: "crontab",
                    value,
                },
                checkin_margin: CHECKIN_MARGIN_MINUTES,
                max_runtime: check_in.max_runtime.as_secs().div_ceil(60).max(1),
                timezone: "UTC",
            }),
        }
    }
}

/// The check-in id of a fire: derived from its key (FNV-1a, 128 bits), so every process
/// and every attempt of one fire updates the same check-in.
fn check_in_id(fire_key: &str) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    let hash = fire_key
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME));
    format!("{hash:032x}")
}

/// A monitor slug Sentry accepts: lowercase letters, digits, `-` and `_`, at most 50.
fn monitor_slug(function_id: &str) -> String {
    function_id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_') => c,
            _ => '-',
        })
        .take(50)
        .collect()
}

/// The five-field crontab of a schedule. A six-field one (seconds first) fires in exactly
/// the minutes its last five fields match, so those are what Sentry expects check-ins in;
/// anything else (nicknames) has no crontab form.
fn crontab(schedule: &str) -> Option<String> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    match fields.len() {
        5 => Some(fields.join(" ")),
        6 => Some(fields[1..].join(" ")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fire(schedule: &str, status: CheckInStatus) -> CronCheckIn {
        CronCheckIn {
            function_id: "Nightly Report".into(),
            fire_key: "cron:nightly:1700000000000".into(),
            schedule: schedule.into(),
            max_runtime: Duration::from_secs(90),
            status,
            duration: None,
        }
    }

    #[test]
    fn a_fire_keeps_one_check_in_id_and_upserts_its_monitor() {
        let open = CheckInPayload::new(&fire("*/5 * * * * *", CheckInStatus::InProgress), "prod");
        let close = CheckInPayload::new(&fire("*/5 * * * * *", CheckInStatus::Ok), "prod");
        assert_eq!(open.check_in_id, close.check_in_id);
        assert_eq!(open.check_in_id.len(), 32);
        assert_eq!(open.monitor_slug, "nightly-report");
        let json = serde_json::to_value(&open).unwrap();
        assert_eq!(json["status"], "in_progress");
        assert_eq!(json["monitor_config"]["schedule"]["type"], "crontab");
        assert_eq!(json["monitor_config"]["schedule"]["value"], "* * * * *");
        assert_eq!(json["monitor_config"]["max_runtime"], 2);
        let other = CheckInPayload::new(
            &CronCheckIn {
                fire_key: "cron:nightly:1700000060000".into(),
                ..fire("0 3 * * *", CheckInStatus::InProgress)
            },
            "",
        );
        assert_ne!(other.check_in_id, open.check_in_id);
        assert!(other.environment.is_none());
        assert!(
            CheckInPayload::new(&fire("@daily", CheckInStatus::Ok), "p")
                .monitor_config
                .is_none()
        );
    }
}
