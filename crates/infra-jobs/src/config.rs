//! Which events backend to use, read from the environment.

use std::fmt;
use std::time::Duration;

use infra_core::{Backoff, Env, Error, Result, RetryPolicy, Secret, parse_url};
use url::Url;

/// Inngest Cloud's event API.
pub const INNGEST_CLOUD_EVENT_API: &str = "https://inn.gs";
/// The Inngest dev server's default address.
pub const INNGEST_DEV_SERVER: &str = "http://127.0.0.1:8288";

/// How the Inngest client retries one send unless configured otherwise: 5 attempts,
/// 100 ms doubling up to 2 s between them (as Inngest's own SDKs do).
pub const DEFAULT_INNGEST_RETRY: RetryPolicy = RetryPolicy::new(
    5,
    Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
);

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
    /// Attempts of one send: 429, 5xx and transport failures are retried with the policy's
    /// jittered back-off while the deadline allows (default [`DEFAULT_INNGEST_RETRY`]).
    pub retry: RetryPolicy,
}

impl InngestConfig {
    /// A config for `base_url` with `event_key`.
    pub fn new(base_url: Url, event_key: impl Into<String>) -> Self {
        InngestConfig {
            event_key: Secret::new(event_key.into()),
            base_url,
            timeout: Duration::from_secs(10),
            retry: DEFAULT_INNGEST_RETRY,
        }
    }
}

impl fmt::Debug for InngestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InngestConfig")
            .field("event_key", &self.event_key)
            .field("base_url", &self.base_url.as_str())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// The jobs backend picked from the environment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JobsConfig {
    /// The in-process queue ([`crate::MemoryQueue`]).
    Memory,
    /// The durable PostgreSQL queue ([`crate::PgQueue`], feature `postgres`) on
    /// `DATABASE_URL`.
    Postgres,
    /// The Inngest Event API; Inngest runs the functions through the serve handler.
    Inngest(InngestConfig),
}

impl JobsConfig {
    /// `INFRA_JOBS_BACKEND` = `inngest` | `postgres` | `memory` when set. Unset: Inngest when
    /// `INNGEST_EVENT_KEY` or `INNGEST_DEV` is set, else PostgreSQL when `DATABASE_URL` is set
    /// and the `postgres` feature is on, else memory.
    ///
    /// `INNGEST_DEV` is `1`/`true` (dev server at its default address) or the dev server's URL.
    pub fn from_env(env: &Env) -> Result<Self> {
        let inngest = JobsConfig::inngest_from_env(env)?;
        match env.get("INFRA_JOBS_BACKEND").as_deref().map(str::trim) {
            None | Some("") => Ok(match inngest {
                Some(config) => JobsConfig::Inngest(config),
                None if cfg!(feature = "postgres") && env.is_set("DATABASE_URL") => {
                    JobsConfig::Postgres
                }
                None => JobsConfig::Memory,
            }),
            Some("memory") => Ok(JobsConfig::Memory),
            Some("postgres") => {
                if !cfg!(feature = "postgres") {
                    return Err(Error::config(
                        "INFRA_JOBS_BACKEND",
                        "is `postgres` but infra-jobs was built without its `postgres` feature",
                    ));
                }
                if !env.is_set("DATABASE_URL") {
                    return Err(Error::config(
                        "DATABASE_URL",
                        "must be set when INFRA_JOBS_BACKEND is `postgres`",
                    ));
                }
                Ok(JobsConfig::Postgres)
            }
            Some("inngest") => inngest.map(JobsConfig::Inngest).ok_or_else(|| {
                Error::config(
                    "INNGEST_EVENT_KEY",
                    "must be set (or INNGEST_DEV) when INFRA_JOBS_BACKEND is `inngest`",
                )
            }),
            Some(other) => Err(Error::config(
                "INFRA_JOBS_BACKEND",
                format_args!("must be `inngest`, `postgres` or `memory`, got `{other}`"),
            )),
        }
    }

    /// The Inngest settings, when `INNGEST_EVENT_KEY` or `INNGEST_DEV` is set.
    fn inngest_from_env(env: &Env) -> Result<Option<InngestConfig>> {
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
            return Ok(None);
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
        Ok(Some(InngestConfig {
            event_key,
            base_url,
            timeout,
            retry: DEFAULT_INNGEST_RETRY,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_without_variables() {
        let cfg = JobsConfig::from_env(&Env::empty()).unwrap();
        assert!(matches!(cfg, JobsConfig::Memory));
    }

    #[test]
    fn backend_variable_and_default_rule() {
        let db = ("DATABASE_URL", "postgres://localhost/app");
        let cfg = JobsConfig::from_env(&Env::from_pairs([db])).unwrap();
        if cfg!(feature = "postgres") {
            assert!(matches!(cfg, JobsConfig::Postgres));
        } else {
            assert!(matches!(cfg, JobsConfig::Memory));
        }
        let cfg = JobsConfig::from_env(&Env::from_pairs([db, ("INNGEST_DEV", "1")])).unwrap();
        assert!(matches!(cfg, JobsConfig::Inngest(_)));
        let cfg = JobsConfig::from_env(&Env::from_pairs([
            db,
            ("INNGEST_DEV", "1"),
            ("INFRA_JOBS_BACKEND", "memory"),
        ]))
        .unwrap();
        assert!(matches!(cfg, JobsConfig::Memory));
        let err =
            JobsConfig::from_env(&Env::from_pairs([("INFRA_JOBS_BACKEND", "redis")])).unwrap_err();
        assert_eq!(err.variable(), Some("INFRA_JOBS_BACKEND"));
        let err = JobsConfig::from_env(&Env::from_pairs([("INFRA_JOBS_BACKEND", "inngest")]))
            .unwrap_err();
        assert_eq!(err.variable(), Some("INNGEST_EVENT_KEY"));
        if cfg!(feature = "postgres") {
            let err = JobsConfig::from_env(&Env::from_pairs([("INFRA_JOBS_BACKEND", "postgres")]))
                .unwrap_err();
            assert_eq!(err.variable(), Some("DATABASE_URL"));
        }
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
