//! Cron schedules for functions, parsed by `croner`.

use std::fmt;
use std::str::FromStr;

use chrono::{TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use infra_core::{Error, Result};

/// A parsed cron expression, evaluated in UTC. Five fields, or six with seconds first.
#[derive(Clone)]
pub struct CronSchedule {
    expression: String,
    /// Shared: a parsed pattern is large and triggers are cloned with their function.
    cron: std::sync::Arc<Cron>,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule")
            .field(&self.expression)
            .finish()
    }
}

impl CronSchedule {
    /// Parses `expression`; a bad one is an invalid-input error on field `cron`.
    pub fn parse(expression: &str) -> Result<Self> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| {
                Error::invalid_input(
                    "cron",
                    format!("`{expression}` is not a cron schedule: {e}"),
                )
            })?;
        Ok(CronSchedule {
            expression: expression.to_owned(),
            cron: std::sync::Arc::new(cron),
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first fire time strictly after `after_ms` (milliseconds since the Unix epoch).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        // Whole seconds: a schedule fires on the second, whatever the caller's milliseconds.
        let after = Utc.timestamp_opt(after_ms.div_euclid(1000), 0).single()?;
        self.cron
            .find_next_occurrence(&after, false)
            .ok()
            .map(|t| t.timestamp() * 1000)
    }
}

impl FromStr for CronSchedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        CronSchedule::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_fire_times() {
        let every_minute = CronSchedule::parse("* * * * *").unwrap();
        // 2024-01-01T00:00:30Z → 00:01:00
        assert_eq!(
            every_minute.next_after(1_704_067_230_000),
            Some(1_704_067_260_000)
        );
        let every_2s = CronSchedule::parse("*/2 * * * * *").unwrap();
        assert_eq!(
            every_2s.next_after(1_704_067_200_000),
            Some(1_704_067_202_000)
        );
        assert_eq!(
            CronSchedule::parse("61 * * * *").unwrap_err().field(),
            Some("cron")
        );
    }
}
