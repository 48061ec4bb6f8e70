//! Which realtime backend to use, read from the environment.

use std::fmt;
use std::time::Duration;

use infra_core::{Env, Error, Result, RetryPolicy, Secret};
use url::Url;

use crate::encryption::{EncryptionMasterKey, MASTER_KEY_VARIABLE};
use crate::pusher_retry::DEFAULT_PUSHER_RETRY;
use crate::webhook::{DEFAULT_WEBHOOK_TOLERANCE, webhook_tolerance_from_env};

/// Settings of the Pusher Channels HTTP API client.
#[derive(Clone)]
#[non_exhaustive]
pub struct PusherConfig {
    /// `PUSHER_APP_ID`.
    pub app_id: String,
    /// `PUSHER_KEY`, the public app key.
    pub key: String,
    /// `PUSHER_SECRET`.
    pub secret: Secret<String>,
    /// The API base: `PUSHER_HOST`/`PUSHER_PORT`/`PUSHER_USE_TLS`, else
    /// `https://api-{PUSHER_CLUSTER}.pusher.com` (cluster `mt1` by default).
    pub base_url: Url,
    /// Deadline of one API call, retries included (`PUSHER_TIMEOUT`, default 10s).
    pub timeout: Duration,
    /// `PUSHER_ENCRYPTION_MASTER_KEY`: base64 of 32 bytes, for `private-encrypted-` channels.
    pub encryption_master_key: Option<EncryptionMasterKey>,
    /// How failed calls are retried within [`timeout`](Self::timeout) (default
    /// [`DEFAULT_PUSHER_RETRY`]); a 429's `Retry-After` is a floor under each wait.
    pub retry: RetryPolicy,
    /// How far a webhook's `time_ms` may lie from now, either way
    /// (`PUSHER_WEBHOOK_TOLERANCE`, default 5 minutes).
    pub webhook_tolerance: Duration,
}

impl PusherConfig {
    /// A config for an app at `base_url`.
    pub fn new(
        base_url: Url,
        app_id: impl Into<String>,
        key: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        PusherConfig {
            app_id: app_id.into(),
            key: key.into(),
            secret: Secret::new(secret.into()),
            base_url,
            timeout: Duration::from_secs(10),
            encryption_master_key: None,
            retry: DEFAULT_PUSHER_RETRY,
            webhook_tolerance: DEFAULT_WEBHOOK_TOLERANCE,
        }
    }

    /// Adds the master key `private-encrypted-` channels need.
    pub fn with_encryption_master_key(mut self, key: EncryptionMasterKey) -> Self {
        self.encryption_master_key = Some(key);
        self
    }

    /// Sets the deadline of one call, retries included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how failed calls are retried.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how far a webhook's `time_ms` may lie from now, either way.
    pub fn with_webhook_tolerance(mut self, tolerance: Duration) -> Self {
        self.webhook_tolerance = tolerance;
        self
    }
}

impl fmt::Debug for PusherConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PusherConfig")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &self.secret)
            .field("base_url", &self.base_url.as_str())
            .field("timeout", &self.timeout)
            .field("encryption_master_key", &self.encryption_master_key)
            .field("retry", &self.retry)
            .field("webhook_tolerance", &self.webhook_tolerance)
            .finish()
    }
}

/// The realtime backend picked from the environment.
#[derive(Debug, Clone)]
#[non_exhaustive]
// Built once at start-up and matched by value; boxing would only add noise for callers.
#[allow(clippy::large_enum_variant)]
pub enum RealtimeConfig {
    /// No Pusher variables set: the embedded Pusher-protocol server (feature `server`).
    Local,
    /// The Pusher Channels HTTP API.
    Pusher(PusherConfig),
}

const CREDENTIALS: [&str; 3] = ["PUSHER_APP_ID", "PUSHER_KEY", "PUSHER_SECRET"];

impl RealtimeConfig {
    /// Pusher when `PUSHER_APP_ID`, `PUSHER_KEY` and `PUSHER_SECRET` are set; the embedded
    /// server when none is; an error naming the missing one when only some are.
    pub fn from_env(env: &Env) -> Result<Self> {
        let set: Vec<bool> = CREDENTIALS.iter().map(|n| env.is_set(n)).collect();
        if set.iter().all(|s| !s) {
            return Ok(RealtimeConfig::Local);
        }
        if let Some(missing) = CREDENTIALS.iter().zip(&set).find(|(_, s)| !**s) {
            return Err(Error::config(
                missing.0,
                "is not set, but other PUSHER_ credentials are (set all three or none)",
            ));
        }
        let app_id = env.required("PUSHER_APP_ID")?;
        if !app_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::config(
                "PUSHER_APP_ID",
                "must be letters and digits only",
            ));
        }
        let tls = env.bool("PUSHER_USE_TLS")?.unwrap_or(true);
        let scheme = if tls { "https" } else { "http" };
        let host = match env.get("PUSHER_HOST") {
            // A bare host only: with a scheme, credentials or a path in it the URL built below
            // still parses, but names another host (`https://x` would call the host `https`).
            Some(host) => match url::Host::parse(host.trim()) {
                Ok(_) => host.trim().to_owned(),
                Err(e) => {
                    return Err(Error::config(
                        "PUSHER_HOST",
                        format_args!(
                            "must be a host name such as `soketi.internal`, without scheme, port                              or path (see PUSHER_USE_TLS and PUSHER_PORT): {e}"
                        ),
                    ));
                }
            },
            None => {
                let cluster = env.get("PUSHER_CLUSTER").unwrap_or_else(|| "mt1".into());
                if !cluster
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(Error::config(
                        "PUSHER_CLUSTER",
                        "must be a cluster name such as `eu` or `mt1`",
                    ));
                }
                format!("api-{cluster}.pusher.com")
            }
        };
        let port = env.integer::<u16>("PUSHER_PORT")?;
        let raw = match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        let base_url = Url::parse(&raw).map_err(|e| {
            Error::config(
                "PUSHER_HOST",
                format_args!("does not form a valid URL: {e}"),
            )
        })?;
        Ok(RealtimeConfig::Pusher(PusherConfig {
            app_id,
            key: env.required("PUSHER_KEY")?,
            secret: env.required_secret("PUSHER_SECRET")?,
            base_url,
            timeout: env
                .duration("PUSHER_TIMEOUT")?
                .unwrap_or(Duration::from_secs(10)),
            encryption_master_key: env
                .optional_secret(MASTER_KEY_VARIABLE)
                .map(|raw| EncryptionMasterKey::from_base64(raw.expose()))
                .transpose()?,
            retry: DEFAULT_PUSHER_RETRY,
            webhook_tolerance: webhook_tolerance_from_env(env)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_without_credentials() {
        assert!(matches!(
            RealtimeConfig::from_env(&Env::empty()).unwrap(),
            RealtimeConfig::Local
        ));
    }

    #[test]
    fn webhook_tolerance_from_the_environment() {
        let creds = [
            ("PUSHER_APP_ID", "3"),
            ("PUSHER_KEY", "k"),
            ("PUSHER_SECRET", "s"),
        ];
        let RealtimeConfig::Pusher(c) = RealtimeConfig::from_env(&Env::from_pairs(creds)).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.webhook_tolerance, DEFAULT_WEBHOOK_TOLERANCE);
        let env = Env::from_pairs(
            creds
                .into_iter()
                .chain([("PUSHER_WEBHOOK_TOLERANCE", "90s")]),
        );
        let RealtimeConfig::Pusher(c) = RealtimeConfig::from_env(&env).unwrap() else {
            panic!()
        };
        assert_eq!(c.webhook_tolerance, Duration::from_secs(90));
        assert_eq!(
            crate::AppCredentials::from(&c).webhook_tolerance,
            Duration::from_secs(90)
        );
        let env = Env::from_pairs(creds.into_iter().chain([("PUSHER_WEBHOOK_TOLERANCE", "0")]));
        assert_eq!(
            RealtimeConfig::from_env(&env).unwrap_err().variable(),
            Some("PUSHER_WEBHOOK_TOLERANCE")
        );
    }

    #[test]
    fn partial_credentials_name_the_missing_one() {
        let env = Env::from_pairs([("PUSHER_APP_ID", "1"), ("PUSHER_SECRET", "s3cr3t")]);
        let err = RealtimeConfig::from_env(&env).unwrap_err();
        assert_eq!(err.variable(), Some("PUSHER_KEY"));
        assert!(!err.to_string().contains("s3cr3t"));
    }

    #[test]
    fn master_key_of_the_wrong_length_names_the_variable() {
        let env = Env::from_pairs([
            ("PUSHER_APP_ID", "3"),
            ("PUSHER_KEY", "k"),
            ("PUSHER_SECRET", "s"),
            // base64 of 16 bytes
            (MASTER_KEY_VARIABLE, "AAECAwQFBgcICQoLDA0ODw=="),
        ]);
        let err = RealtimeConfig::from_env(&env).unwrap_err();
        assert_eq!(err.variable(), Some(MASTER_KEY_VARIABLE));
        assert!(err.to_string().contains("16 bytes"), "{err}");
        let env = Env::from_pairs([
            ("PUSHER_APP_ID", "3"),
            ("PUSHER_KEY", "k"),
            ("PUSHER_SECRET", "s"),
            (
                MASTER_KEY_VARIABLE,
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ]);
        let RealtimeConfig::Pusher(c) = RealtimeConfig::from_env(&env).unwrap() else {
            panic!()
        };
        assert!(c.encryption_master_key.is_some());
        assert!(!format!("{c:?}").contains("AAEC"));
    }

    #[test]
    fn cluster_and_custom_host() {
        let env = Env::from_pairs([
            ("PUSHER_APP_ID", "3"),
            ("PUSHER_KEY", "k"),
            ("PUSHER_SECRET", "topsecret"),
            ("PUSHER_CLUSTER", "eu"),
        ]);
        let RealtimeConfig::Pusher(c) = RealtimeConfig::from_env(&env).unwrap() else {
            panic!()
        };
        assert_eq!(c.base_url.as_str(), "https://api-eu.pusher.com/");
        assert!(!format!("{c:?}").contains("topsecret"));

        let env = Env::from_pairs([
            ("PUSHER_APP_ID", "3"),
            ("PUSHER_KEY", "k"),
            ("PUSHER_SECRET", "s"),
            ("PUSHER_HOST", "127.0.0.1"),
            ("PUSHER_PORT", "6001"),
            ("PUSHER_USE_TLS", "false"),
        ]);
        let RealtimeConfig::Pusher(c) = RealtimeConfig::from_env(&env).unwrap() else {
            panic!()
        };
        assert_eq!(c.base_url.as_str(), "http://127.0.0.1:6001/");

        let env = Env::from_pairs([
            ("PUSHER_APP_ID", "3"),
            ("PUSHER_KEY", "k"),
            ("PUSHER_SECRET", "s"),
            ("PUSHER_PORT", "99999"),
        ]);
        assert_eq!(
            RealtimeConfig::from_env(&env).unwrap_err().variable(),
            Some("PUSHER_PORT")
        );
    }
}
