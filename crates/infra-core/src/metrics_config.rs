//! Where the Prometheus endpoint listens and how often the periodic gauges are read.
//!
//! `INFRA_METRICS_ADDR` (e.g. `127.0.0.1:9464`) turns metrics on: the app installs the
//! Prometheus recorder and serves `GET /metrics` there. Unset, no recorder is installed and
//! every `metrics` call in the crates stays a no-op. `INFRA_METRICS_INTERVAL` (default 15s)
//! is how often the gauges that need a query (queue depth, pool state, process figures) are
//! refreshed: once per interval, never once per scrape.

use std::net::SocketAddr;
use std::time::Duration;

use crate::env::Env;
use crate::error::{Error, Result};

/// The variable naming the metrics listener's address.
pub const METRICS_ADDR_VAR: &str = "INFRA_METRICS_ADDR";
/// The variable naming how often periodic gauges are refreshed.
pub const METRICS_INTERVAL_VAR: &str = "INFRA_METRICS_INTERVAL";
/// How often periodic gauges are refreshed unless `INFRA_METRICS_INTERVAL` says otherwise.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(15);

/// The metrics settings of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served; `None`: metrics are off.
    pub addr: Option<SocketAddr>,
    /// How often the periodic gauges are refreshed.
    pub interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            addr: None,
            interval: DEFAULT_METRICS_INTERVAL,
        }
    }
}

impl MetricsConfig {
    /// Reads `INFRA_METRICS_ADDR` (an `ip:port`) and `INFRA_METRICS_INTERVAL` (a duration
    /// such as `15s`, at least 100ms); a malformed value is a configuration error naming the
    /// variable.
    pub fn from_env(env: &Env) -> Result<Self> {
        let addr = match env.get(METRICS_ADDR_VAR) {
            None => None,
            Some(raw) => Some(raw.trim().parse::<SocketAddr>().map_err(|_| {
                Error::config(
                    METRICS_ADDR_VAR,
                    "must be an address with a port, such as 127.0.0.1:9464 or [::1]:9464",
                )
            })?),
        };
        let interval = env
            .duration(METRICS_INTERVAL_VAR)?
            .unwrap_or(DEFAULT_METRICS_INTERVAL);
        if interval < Duration::from_millis(100) {
            return Err(Error::config(
                METRICS_INTERVAL_VAR,
                "must be at least 100ms (the gauges it refreshes run queries)",
            ));
        }
        Ok(MetricsConfig { addr, interval })
    }

    /// Whether metrics are on.
    pub fn enabled(&self) -> bool {
        self.addr.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn unset_means_off_with_the_default_interval() {
        let config = MetricsConfig::from_env(&Env::empty()).unwrap();
        assert_eq!(config, MetricsConfig::default());
        assert!(!config.enabled());
    }

    #[test]
    fn reads_the_address_and_interval() {
        let env = Env::from_pairs([
            (METRICS_ADDR_VAR, "127.0.0.1:9464"),
            (METRICS_INTERVAL_VAR, "2s"),
        ]);
        let config = MetricsConfig::from_env(&env).unwrap();
        assert_eq!(config.addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(config.interval, Duration::from_secs(2));
    }

    #[test]
    fn a_bad_address_names_its_variable() {
        for bad in ["localhost", "127.0.0.1", "9464", "127.0.0.1:port"] {
            let err =
                MetricsConfig::from_env(&Env::from_pairs([(METRICS_ADDR_VAR, bad)])).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(err.message().contains(METRICS_ADDR_VAR), "{err}");
        }
    }

    #[test]
    fn a_bad_interval_names_its_variable() {
        for bad in ["soon", "10ms", "0s"] {
            let err = MetricsConfig::from_env(&Env::from_pairs([(METRICS_INTERVAL_VAR, bad)]))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(err.message().contains(METRICS_INTERVAL_VAR), "{err}");
        }
    }
}
