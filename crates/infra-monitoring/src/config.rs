//! Monitoring settings, read from the environment in one place.

use std::fmt;
use std::path::PathBuf;

use infra_core::{Env, Error, Result, Secret};

/// Variables that may hold the Sentry DSN; the second is the seed's Next.js name.
pub const DSN_VARIABLES: [&str; 2] = ["SENTRY_DSN", "NEXT_PUBLIC_SENTRY_DSN"];

/// A parsed Sentry DSN: `scheme://public_key@host[:port]/[path/]project_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    raw: Secret<String>,
    /// `http` or `https`.
    pub scheme: String,
    /// Host and optional port.
    pub host: String,
    /// Path before the project id, with a trailing slash (usually empty).
    pub path: String,
    /// The project id.
    pub project_id: String,
    public_key: Secret<String>,
}

impl Dsn {
    /// Parses a DSN read from `variable`; errors name the variable, never the key.
    pub fn parse(variable: &str, raw: &str) -> Result<Self> {
        let url = url::Url::parse(raw.trim())
            .map_err(|e| Error::config(variable, format_args!("is not a valid DSN URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::config(
                variable,
                "must be an http:// or https:// DSN",
            ));
        }
        if url.username().is_empty() {
            return Err(Error::config(
                variable,
                "has no public key (expected https://<key>@<host>/<project>)",
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::config(variable, "has no host"))?;
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let path = url.path().trim_start_matches('/');
        let (prefix, project_id) = match path.rsplit_once('/') {
            Some((prefix, id)) => (format!("{prefix}/"), id),
            None => (String::new(), path),
        };
        if project_id.is_empty() || !project_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::config(
                variable,
                "must end with a numeric project id",
            ));
        }
        Ok(Dsn {
            raw: Secret::new(raw.trim().to_owned()),
            scheme: url.scheme().to_owned(),
            host,
            path: prefix,
            project_id: project_id.to_owned(),
            public_key: Secret::new(url.username().to_owned()),
        })
    }

    /// The DSN as given.
    pub fn expose(&self) -> &str {
        self.raw.expose()
    }

    /// The public key.
    pub fn public_key(&self) -> &Secret<String> {
        &self.public_key
    }

    /// Where envelopes are posted: `{scheme}://{host}/{path}api/{project_id}/envelope/`.
    pub fn envelope_url(&self) -> String {
        format!(
            "{}://{}/{}api/{}/envelope/",
            self.scheme, self.host, self.path, self.project_id
        )
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Dsn({}://***@{}/{}{})",
            self.scheme, self.host, self.path, self.project_id
        )
    }
}

/// Where the local sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// Standard error.
    Stderr,
    /// Appends to a file.
    File(PathBuf),
}

/// Everything `Monitoring::from_env` reads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MonitoringConfig {
    /// `SENTRY_DSN` / `NEXT_PUBLIC_SENTRY_DSN`; `None` selects the local sink.
    pub dsn: Option<Dsn>,
    /// `SENTRY_ENVIRONMENT` (default `development`).
    pub environment: String,
    /// `SENTRY_RELEASE` (default `infra-monitoring@<version>`).
    pub release: String,
    /// `SENTRY_SAMPLE_RATE`, 0.0–1.0 (default 1.0).
    pub sample_rate: f32,
    /// `SENTRY_TRACES_SAMPLE_RATE`, 0.0–1.0 (default 0.0).
    pub traces_sample_rate: f32,
    /// `SENTRY_DEBUG` (default false).
    pub debug: bool,
    /// `SENTRY_SEND_EMAILS`: keep user emails in events (default false).
    pub send_emails: bool,
    /// `INFRA_MONITORING_LOG_FILE`: the local sink's file (default stderr).
    pub sink: SinkTarget,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            dsn: None,
            environment: "development".into(),
            release: concat!("infra-monitoring@", env!("CARGO_PKG_VERSION")).into(),
            sample_rate: 1.0,
            traces_sample_rate: 0.0,
            debug: false,
            send_emails: false,
            sink: SinkTarget::Stderr,
        }
    }
}

fn rate(env: &Env, name: &str, default: f32) -> Result<f32> {
    match env.float(name)? {
        None => Ok(default),
        Some(r) if (0.0..=1.0).contains(&r) => Ok(r as f32),
        Some(r) => Err(Error::config(
            name,
            format_args!("must be between 0.0 and 1.0, got {r}"),
        )),
    }
}

impl MonitoringConfig {
    /// Reads every monitoring variable.
    pub fn from_env(env: &Env) -> Result<Self> {
        let defaults = MonitoringConfig::default();
        let dsn = env
            .first_of(&DSN_VARIABLES)
            .map(|(variable, raw)| Dsn::parse(variable, &raw))
            .transpose()?;
        Ok(MonitoringConfig {
            dsn,
            environment: env
                .get("SENTRY_ENVIRONMENT")
                .unwrap_or(defaults.environment),
            release: env.get("SENTRY_RELEASE").unwrap_or(defaults.release),
            sample_rate: rate(env, "SENTRY_SAMPLE_RATE", 1.0)?,
            traces_sample_rate: rate(env, "SENTRY_TRACES_SAMPLE_RATE", 0.0)?,
            debug: env.bool("SENTRY_DEBUG")?.unwrap_or(false),
            send_emails: env.bool("SENTRY_SEND_EMAILS")?.unwrap_or(false),
            sink: match env.get("INFRA_MONITORING_LOG_FILE") {
                Some(path) => SinkTarget::File(PathBuf::from(path)),
                None => SinkTarget::Stderr,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_parts_and_envelope_url() {
        let dsn = Dsn::parse("SENTRY_DSN", "https://abc123@o1.ingest.sentry.io/4505").unwrap();
        assert_eq!(
            dsn.envelope_url(),
            "https://o1.ingest.sentry.io/api/4505/envelope/"
        );
        let dsn = Dsn::parse("SENTRY_DSN", "http://k@127.0.0.1:9000/sub/path/42").unwrap();
        assert_eq!(
            dsn.envelope_url(),
            "http://127.0.0.1:9000/sub/path/api/42/envelope/"
        );
        assert_eq!(dsn.public_key().expose(), "k");
        assert!(!format!("{dsn:?}").contains("k@"));
    }

    #[test]
    fn malformed_dsn_names_the_variable_without_the_key() {
        for raw in [
            "not a url",
            "ftp://secretkey@host/1",
            "https://host/1",
            "https://secretkey@host/",
            "https://secretkey@host/abc",
        ] {
            let err = Dsn::parse("NEXT_PUBLIC_SENTRY_DSN", raw).unwrap_err();
            assert_eq!(err.variable(), Some("NEXT_PUBLIC_SENTRY_DSN"), "{raw}");
            assert!(!format!("{err} {err:?}").contains("secretkey"), "{err:?}");
        }
    }

    #[test]
    fn defaults_and_rates() {
        let cfg = MonitoringConfig::from_env(&Env::empty()).unwrap();
        assert!(cfg.dsn.is_none());
        assert_eq!(cfg.sink, SinkTarget::Stderr);
        let err = MonitoringConfig::from_env(&Env::from_pairs([("SENTRY_SAMPLE_RATE", "1.5")]))
            .unwrap_err();
        assert_eq!(err.variable(), Some("SENTRY_SAMPLE_RATE"));
        let cfg = MonitoringConfig::from_env(&Env::from_pairs([(
            "NEXT_PUBLIC_SENTRY_DSN",
            "https://k@h.io/1",
        )]))
        .unwrap();
        assert_eq!(cfg.dsn.unwrap().project_id, "1");
    }
}
