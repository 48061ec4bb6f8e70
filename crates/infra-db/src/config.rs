//! Database settings, read from the environment in one place.

use std::fmt;
use std::time::Duration;

use infra_core::{Env, Error, Result, Secret, redact_url};

/// Settings of [`Database`](crate::Database).
#[derive(Clone)]
#[non_exhaustive]
pub struct DbConfig {
    /// `DATABASE_URL`: `postgres://user:password@host:port/db`.
    pub url: Secret<String>,
    /// `DATABASE_REPLICA_URLS`: read replicas, comma separated.
    pub replica_urls: Vec<Secret<String>>,
    /// `DATABASE_POOL_SIZE` (default 10).
    pub pool_size: usize,
    /// `DATABASE_ACQUIRE_TIMEOUT`: longest wait for a pooled connection (default 5s).
    pub acquire_timeout: Duration,
    /// `DATABASE_CONNECT_TIMEOUT`: longest time to open one connection (default 5s).
    pub connect_timeout: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT`: `statement_timeout` set on every new connection
    /// (default 30s; `0` turns it off).
    pub statement_timeout: Duration,
    /// `DATABASE_IDLE_TIMEOUT`: connections unused this long are closed (default 10m).
    pub idle_timeout: Duration,
    /// `DATABASE_VERIFY_AFTER_IDLE`: a checkout verifies a connection with `SELECT 1` only when
    /// it was last checked out this long ago or more (default 500ms; `0` verifies every
    /// checkout). Connections whose socket is closed are dropped on checkout either way.
    pub verify_after_idle: Duration,
}

impl DbConfig {
    /// Defaults for `url`, checked as `DATABASE_URL` would be.
    pub fn new(url: &str) -> Result<Self> {
        validate_url("DATABASE_URL", url)?;
        Ok(DbConfig {
            url: Secret::new(url.trim().to_owned()),
            replica_urls: Vec::new(),
            pool_size: 10,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            verify_after_idle: Duration::from_millis(500),
        })
    }

    /// Reads `DATABASE_URL` (required), `DATABASE_REPLICA_URLS`, `DATABASE_POOL_SIZE`,
    /// `DATABASE_ACQUIRE_TIMEOUT`, `DATABASE_CONNECT_TIMEOUT`, `DATABASE_STATEMENT_TIMEOUT`,
    /// `DATABASE_IDLE_TIMEOUT`, `DATABASE_VERIFY_AFTER_IDLE`.
    pub fn from_env(env: &Env) -> Result<Self> {
        let mut config = DbConfig::new(&env.required("DATABASE_URL")?)?;
        for replica in env.list("DATABASE_REPLICA_URLS") {
            validate_url("DATABASE_REPLICA_URLS", &replica)?;
            config.replica_urls.push(Secret::new(replica));
        }
        if let Some(size) = env.integer::<usize>("DATABASE_POOL_SIZE")? {
            if size == 0 {
                return Err(Error::config("DATABASE_POOL_SIZE", "must be at least 1"));
            }
            config.pool_size = size;
        }
        for (name, slot) in [
            ("DATABASE_ACQUIRE_TIMEOUT", &mut config.acquire_timeout),
            ("DATABASE_CONNECT_TIMEOUT", &mut config.connect_timeout),
            ("DATABASE_IDLE_TIMEOUT", &mut config.idle_timeout),
        ] {
            if let Some(t) = env.duration(name)? {
                if t.is_zero() {
                    return Err(Error::config(name, "must be greater than zero"));
                }
                *slot = t;
            }
        }
        if let Some(t) = env.duration("DATABASE_STATEMENT_TIMEOUT")? {
            config.statement_timeout = t;
        }
        if let Some(t) = env.duration("DATABASE_VERIFY_AFTER_IDLE")? {
            config.verify_after_idle = t;
        }
        Ok(config)
    }
}

/// Checks a PostgreSQL URL; errors say what is wrong without echoing it (it may hold a
/// password).
fn validate_url(variable: &str, raw: &str) -> Result<()> {
    let url = infra_core::parse_url(variable, raw)?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(Error::config(
            variable,
            format_args!(
                "must start with postgres:// or postgresql://, not {}://",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(variable, "has no host"));
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err(Error::config(
            variable,
            "names no database (expected …/dbname)",
        ));
    }
    #[cfg(feature = "postgres")]
    crate::tls::SslMode::from_url(variable, raw)?;
    Ok(())
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replicas: Vec<String> = self
            .replica_urls
            .iter()
            .map(|u| redact_url(u.expose()))
            .collect();
        f.debug_struct("DbConfig")
            .field("url", &redact_url(self.url.expose()))
            .field("replica_urls", &replicas)
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("verify_after_idle", &self.verify_after_idle)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_name_the_variable_and_hide_the_password() {
        for (raw, problem) in [
            ("", "is set but empty"),
            ("mysql://u:s3cret@h/db", "must start with postgres://"),
            ("postgres://u:s3cret@h:99999/db", "invalid port"),
            ("postgres://u:s3cret@h:abc/db", "invalid port"),
            ("postgres://u:s3cret@h:5432/", "names no database"),
            ("not a url s3cret", "not a valid URL"),
        ] {
            let err = DbConfig::from_env(&Env::from_pairs([("DATABASE_URL", raw)])).unwrap_err();
            assert_eq!(err.variable(), Some("DATABASE_URL"), "{raw}");
            assert!(err.to_string().contains(problem), "{raw}: {err}");
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
        }
        let err = DbConfig::from_env(&Env::empty()).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL is not set"));
    }

    #[test]
    fn settings_and_debug() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://app:s3cret@db:5432/app"),
            (
                "DATABASE_REPLICA_URLS",
                "postgres://r:s3cret@r1/app, postgres://r@r2/app",
            ),
            ("DATABASE_POOL_SIZE", "4"),
            ("DATABASE_STATEMENT_TIMEOUT", "2s"),
            ("DATABASE_VERIFY_AFTER_IDLE", "0"),
        ]);
        let cfg = DbConfig::from_env(&env).unwrap();
        assert_eq!(cfg.replica_urls.len(), 2);
        assert_eq!(cfg.pool_size, 4);
        assert_eq!(cfg.statement_timeout, Duration::from_secs(2));
        assert_eq!(cfg.verify_after_idle, Duration::ZERO);
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let err = DbConfig::from_env(&Env::from_pairs([
            ("DATABASE_URL", "postgres://h/db"),
            ("DATABASE_POOL_SIZE", "0"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable(), Some("DATABASE_POOL_SIZE"));
    }
}
