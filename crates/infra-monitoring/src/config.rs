//! Monitoring settings, read from the environment in one place.

use std::fmt;
use std::path::PathBuf;

use infra_core::{Env, Error, Result, Secret};

/// Variables that may hold the Sentry DSN; the second is the TypeScript module's
/// Next.js name.
pub const DSN_VARIABLES: [&str; 2] = ["SENTRY_DSN", "NEXT_PUBLIC_SENTRY_DSN"];

/// The example in DSN errors: never the value that was refused, which holds the key.
#[cfg(feature = "sentry")]
const DSN_SHAPE: &str = "(expected https://<public key>@<host>/<project id>)";

/// A Sentry DSN and the variable it came from.
///
/// With the `sentry` feature it is parsed by the `sentry` crate's own
/// `sentry::types::Dsn` (which also derives the envelope URL and the auth header), so
/// what we accept is exactly what the client accepts, plus one rule of Sentry's ingestion:
/// the project id is a number. Without the feature nothing here can send to Sentry, so the
/// value is only kept (and [`Monitoring::from_config`](crate::Monitoring::from_config)
/// refuses it, naming the variable). `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    variable: &'static str,
    raw: Secret<String>,
    #[cfg(feature = "sentry")]
    parsed: sentry::types::Dsn,
}

impl Dsn {
    /// Parses a DSN read from `variable` (`SENTRY_DSN` or `NEXT_PUBLIC_SENTRY_DSN`); errors
    /// are `Config` errors naming the variable, never the key.
    pub fn parse(variable: &'static str, raw: &str) -> Result<Self> {
        let raw = raw.trim();
        #[cfg(feature = "sentry")]
        let parsed = parse_sentry_dsn(variable, raw)?;
        Ok(Dsn {
            variable,
            raw: Secret::new(raw.to_owned()),
            #[cfg(feature = "sentry")]
            parsed,
        })
    }

    /// The variable the DSN was read from, for error messages.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The DSN as given (it holds the public key: never log it).
    pub fn expose(&self) -> &str {
        self.raw.expose()
    }

    /// The `sentry` crate's DSN.
    #[cfg(feature = "sentry")]
    pub fn sentry_dsn(&self) -> &sentry::types::Dsn {
        &self.parsed
    }

    /// Where envelopes are posted: `{scheme}://{host}[:port]{path}api/{project_id}/envelope/`.
    #[cfg(feature = "sentry")]
    pub fn envelope_url(&self) -> url::Url {
        self.parsed.envelope_api_url()
    }

    /// The project id.
    #[cfg(feature = "sentry")]
    pub fn project_id(&self) -> &str {
        self.parsed.project_id().value()
    }

    /// The host the DSN points at.
    #[cfg(feature = "sentry")]
    pub fn host(&self) -> &str {
        self.parsed.host()
    }
}

/// The sentry parser's verdict, as a config error naming the variable and the rule.
#[cfg(feature = "sentry")]
fn parse_sentry_dsn(variable: &'static str, raw: &str) -> Result<sentry::types::Dsn> {
    use sentry::types::ParseDsnError;
    let parsed: sentry::types::Dsn = raw.parse().map_err(|e| {
        let problem = match e {
            ParseDsnError::InvalidUrl => "is not a valid DSN URL",
            ParseDsnError::InvalidScheme => "must be an http:// or https:// DSN",
            ParseDsnError::NoUsername => "has no public key",
            ParseDsnError::NoProjectId | ParseDsnError::InvalidProjectId(_) => "has no project id",
        };
        Error::config(variable, format_args!("{problem} {DSN_SHAPE}"))
    })?;
    // The client would accept `/abc`, but Sentry's ingestion routes only numeric project ids:
    // such a DSN could never deliver an event.
    if !parsed
        .project_id()
        .value()
        .bytes()
        .all(|b| b.is_ascii_digit())
    {
        return Err(Error::config(
            variable,
            format_args!("must end with a numeric project id {DSN_SHAPE}"),
        ));
    }
    Ok(parsed)
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Dsn");
        out.field("variable", &self.variable);
        #[cfg(feature = "sentry")]
        out.field("envelope_url", &self.parsed.envelope_api_url().as_str());
        out.finish_non_exhaustive()
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

    #[cfg(feature = "sentry")]
    #[test]
    fn dsn_parts_and_envelope_url() {
        let dsn = Dsn::parse("SENTRY_DSN", "https://abc123@o1.ingest.sentry.io/4505").unwrap();
        assert_eq!(
            dsn.envelope_url().as_str(),
            "https://o1.ingest.sentry.io/api/4505/envelope/"
        );
        assert_eq!(dsn.project_id(), "4505");
        let dsn = Dsn::parse("SENTRY_DSN", " http://k@127.0.0.1:9000/sub/path/42 ").unwrap();
        assert_eq!(
            dsn.envelope_url().as_str(),
            "http://127.0.0.1:9000/sub/path/api/42/envelope/"
        );
        assert_eq!(dsn.sentry_dsn().public_key(), "k");
        assert_eq!(dsn.variable(), "SENTRY_DSN");
        let debug = format!("{dsn:?}");
        assert!(!debug.contains("k@"), "{debug}");
        assert!(debug.contains("SENTRY_DSN"), "{debug}");
    }

    #[cfg(feature = "sentry")]
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
            assert_eq!(err.kind(), infra_core::ErrorKind::Config, "{raw}");
            assert_eq!(err.variable(), Some("NEXT_PUBLIC_SENTRY_DSN"), "{raw}");
            assert!(!format!("{err} {err:?}").contains("secretkey"), "{err:?}");
        }
    }

    #[cfg(not(feature = "sentry"))]
    #[test]
    fn without_sentry_the_dsn_is_kept_and_hidden() {
        let dsn = Dsn::parse("SENTRY_DSN", "https://secretkey@h.io/1").unwrap();
        assert_eq!(dsn.variable(), "SENTRY_DSN");
        assert!(!format!("{dsn:?}").contains("secretkey"));
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
        assert_eq!(cfg.dsn.unwrap().variable(), "NEXT_PUBLIC_SENTRY_DSN");
    }
}
