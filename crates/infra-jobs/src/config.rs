//! Which events backend to use, read from the environment.

use std::fmt;
use std::time::Duration;

use infra_core::{Env, Result, Secret, parse_url};
use url::Url;

/// Inngest Cloud's event API.
pub const INNGEST_CLOUD_EVENT_API: &str = "https://inn.gs";
/// The Inngest dev server's default address.
pub const INNGEST_DEV_SERVER: &str = "http://127.0.0.1:8288";

/// Settings of the Inngest Event API client.
#[derive(Clone)]
#[non_exhaustive]
pub struct InngestConfig {
    /// `INNGEST_EVENT_KEY` (`test` against the dev server).
    pub event_key: Secret<String>,
    /// Where events are sent: `INNGEST_EVENT_API_BASE_URL`, else `INNGEST_BASE_URL`, else the
    /// dev server when `INNGEST_DEV` is set, else Inngest Cloud.
    pub base_url: Url,
    /// Deadline of one send, retries included (`INNGEST_TIMEOUT`, default 10s).
    pub timeout: Duration,
    /// Most attempts of one send: 429, 5xx and transport failures are retried with jittered
    /// exponential back-off while the deadline allows (default 5).
    pub max_attempts: u32,
}

impl InngestConfig {
    /// A config for `base_url` with `event_key`.
    pub fn new(base_url: Url, event_key: impl Into<String>) -> Self {
        InngestConfig {
            event_key: Secret::new(event_key.into()),
            base_url,
            timeout: Duration::from_secs(10),
            max_attempts: 5,
        }
    }
}

impl fmt::Debug for InngestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InngestConfig")
            .field("event_key", &self.event_key)
            .field("base_url", &self.base_url.as_str())
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// The events backend picked from the environment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JobsConfig {
    /// In-process delivery (no variables set).
    Local,
    /// The Inngest Event API.
    Inngest(InngestConfig),
}

impl JobsConfig {
    /// Inngest when `INNGEST_EVENT_KEY` or `INNGEST_DEV` is set, otherwise local.
    ///
    /// `INNGEST_DEV` is `1`/`true` (dev server at its default address) or the dev server's URL.
    pub fn from_env(env: &Env) -> Result<Self> {
        let dev = match env.get("INNGEST_DEV") {
            None => None,
            Some(v) if v.starts_with("http://") || v.starts_with("https://") => {
                Some(parse_url("INNGEST_DEV", &v)?)
            }
            Some(_) => match env.bool("INNGEST_DEV")? {
                Some(true) => Some(Url::parse(INNGEST_DEV_SERVER).expect("constant URL")),
                _ => None,
            },
        };
        let key = env.optional_secret("INNGEST_EVENT_KEY");
        if key.is_none() && dev.is_none() {
            return Ok(JobsConfig::Local);
        }
        let base_url = match env.url("INNGEST_EVENT_API_BASE_URL")? {
            Some(url) => url,
            None => match env.url("INNGEST_BASE_URL")? {
                Some(url) => url,
                None => dev
                    .clone()
                    .unwrap_or_else(|| Url::parse(INNGEST_CLOUD_EVENT_API).expect("constant URL")),
            },
        };
        let event_key = match key {
            Some(key) => key,
            // The dev server accepts any key; `test` is the SDKs' convention.
            None => Secret::new("test".to_owned()),
        };
        let timeout = env
            .duration("INNGEST_TIMEOUT")?
            .unwrap_or(Duration::from_secs(10));
        Ok(JobsConfig::Inngest(InngestConfig {
            event_key,
            base_url,
            timeout,
            max_attempts: 5,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_without_variables() {
        let cfg = JobsConfig::from_env(&Env::empty()).unwrap();
        assert!(matches!(cfg, JobsConfig::Local));
    }

    #[test]
    fn cloud_with_key_and_dev_server_with_flag() {
        let cfg =
            JobsConfig::from_env(&Env::from_pairs([("INNGEST_EVENT_KEY", "k-secret")])).unwrap();
        let JobsConfig::Inngest(c) = cfg else {
            panic!("inngest")
        };
        assert_eq!(c.base_url.as_str(), "https://inn.gs/");
        assert!(!format!("{c:?}").contains("k-secret"));

        let cfg = JobsConfig::from_env(&Env::from_pairs([("INNGEST_DEV", "1")])).unwrap();
        let JobsConfig::Inngest(c) = cfg else {
            panic!("inngest")
        };
        assert_eq!(c.base_url.as_str(), "http://127.0.0.1:8288/");
        assert_eq!(c.event_key.expose(), "test");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = JobsConfig::from_env(&Env::from_pairs([
            ("INNGEST_EVENT_KEY", "k"),
            ("INNGEST_BASE_URL", "not a url"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable(), Some("INNGEST_BASE_URL"));
        let err = JobsConfig::from_env(&Env::from_pairs([("INNGEST_DEV", "perhaps")])).unwrap_err();
        assert_eq!(err.variable(), Some("INNGEST_DEV"));
    }
}
