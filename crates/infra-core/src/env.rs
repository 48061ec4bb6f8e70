//! Configuration from environment variables, read in one place.
//!
//! Libraries never read `.env` files: binaries load them at the edge (for example with
//! `dotenvy`) and everything below reads through an [`Env`]. An [`Env`] can also be built
//! from a map, which is how tests configure a service without touching the process
//! environment.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// A source of configuration variables: the process environment or a fixed map.
///
/// A variable set to the empty string counts as unset for optional readers (a `.env` line
/// `SENTRY_DSN=` means "no DSN"); required readers say it is empty.
///
/// ```
/// use std::time::Duration;
/// use infra_core::Env;
///
/// let env = Env::from_pairs([("POOL_SIZE", "16"), ("TIMEOUT", "250ms")]);
/// assert_eq!(env.integer::<u32>("POOL_SIZE").unwrap(), Some(16));
/// assert_eq!(env.duration("TIMEOUT").unwrap(), Some(Duration::from_millis(250)));
/// assert_eq!(env.integer::<u32>("MISSING").unwrap(), None);
///
/// let err = env.required("DATABASE_URL").unwrap_err();
/// assert_eq!(err.variable(), Some("DATABASE_URL"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Env {
    overrides: Option<HashMap<String, String>>,
}

impl Env {
    /// Reads the process environment.
    pub fn process() -> Self {
        Env { overrides: None }
    }

    /// An environment with no variables set: every service picks its embedded default.
    pub fn empty() -> Self {
        Env {
            overrides: Some(HashMap::new()),
        }
    }

    /// Reads only the given pairs (tests, embedded configuration).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            overrides: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The raw value, `None` when unset, empty, or not valid unicode.
    pub fn get(&self, name: &str) -> Option<String> {
        let value = match &self.overrides {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// Whether the variable is set to a non-empty value.
    pub fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A required string.
    pub fn required(&self, name: &str) -> Result<String> {
        match &self.overrides {
            Some(map) => match map.get(name) {
                Some(v) if !v.trim().is_empty() => Ok(v.clone()),
                Some(_) => Err(Error::config(name, "is set but empty")),
                None => Err(Error::config(name, "is not set")),
            },
            None => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(v),
                Ok(_) => Err(Error::config(name, "is set but empty")),
                Err(std::env::VarError::NotPresent) => Err(Error::config(name, "is not set")),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(Error::config(name, "is not valid UTF-8"))
                }
            },
        }
    }

    /// An optional string.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.get(name)
    }

    /// The first of several names that is set, with the name it came from: for aliases such
    /// as `SENTRY_DSN` / `NEXT_PUBLIC_SENTRY_DSN`.
    pub fn first_of<'a>(&self, names: &[&'a str]) -> Option<(&'a str, String)> {
        names.iter().find_map(|n| self.get(n).map(|v| (*n, v)))
    }

    /// A required secret (password, key, token, DSN). Errors never contain the value.
    pub fn required_secret(&self, name: &str) -> Result<Secret<String>> {
        self.required(name).map(Secret::new)
    }

    /// An optional secret.
    pub fn optional_secret(&self, name: &str) -> Option<Secret<String>> {
        self.get(name).map(Secret::new)
    }

    /// An optional URL. The error says what is wrong without echoing the URL, since URLs
    /// often carry passwords.
    pub fn url(&self, name: &str) -> Result<Option<url::Url>> {
        self.get(name).map(|raw| parse_url(name, &raw)).transpose()
    }

    /// A required URL.
    pub fn required_url(&self, name: &str) -> Result<url::Url> {
        parse_url(name, &self.required(name)?)
    }

    /// An optional integer (or any `FromStr` number).
    pub fn integer<T>(&self, name: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(name)
            .map(|raw| {
                raw.trim().parse::<T>().map_err(|e| {
                    Error::config(name, format_args!("must be a number, got `{raw}` ({e})"))
                })
            })
            .transpose()
    }

    /// An optional float.
    pub fn float(&self, name: &str) -> Result<Option<f64>> {
        self.integer::<f64>(name)
    }

    /// An optional boolean: `true/false`, `1/0`, `yes/no`, `on/off`.
    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        self.get(name)
            .map(|raw| match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(Error::config(
                    name,
                    format_args!(
                        "must be a boolean (true/false, 1/0, yes/no, on/off), got `{raw}`"
                    ),
                )),
            })
            .transpose()
    }

    /// An optional duration such as `250ms`, `5s`, `1m`.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>> {
        self.get(name)
            .map(|raw| parse_duration(&raw).map_err(|problem| Error::config(name, problem)))
            .transpose()
    }

    /// An optional comma-separated list; empty items are dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses a URL for the variable `name`; errors describe the problem, never the value.
pub fn parse_url(name: &str, raw: &str) -> Result<url::Url> {
    url::Url::parse(raw.trim())
        .map_err(|e| Error::config(name, format_args!("is not a valid URL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn missing_and_empty_name_the_variable() {
        let env = Env::from_pairs([("EMPTY", "  ")]);
        let missing = env.required("NOPE").unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Config);
        assert_eq!(missing.variable(), Some("NOPE"));
        assert!(missing.to_string().contains("NOPE is not set"));
        let empty = env.required("EMPTY").unwrap_err();
        assert!(empty.to_string().contains("EMPTY is set but empty"));
        assert_eq!(env.optional("EMPTY"), None);
    }

    #[test]
    fn malformed_values_name_variable_and_problem() {
        let env = Env::from_pairs([
            ("N", "twelve"),
            ("B", "maybe"),
            ("D", "5 fortnights"),
            ("U", "postgres://user:hunter2@host:notaport/db"),
        ]);
        let n = env.integer::<u32>("N").unwrap_err();
        assert_eq!(n.variable(), Some("N"));
        assert!(n.to_string().contains("must be a number"), "{n}");
        let b = env.bool("B").unwrap_err();
        assert!(b.to_string().contains("B must be a boolean"), "{b}");
        let d = env.duration("D").unwrap_err();
        assert!(d.to_string().contains("unknown unit"), "{d}");
        let u = env.url("U").unwrap_err();
        assert_eq!(u.variable(), Some("U"));
        assert!(u.to_string().contains("invalid port"), "{u}");
        assert!(!u.to_string().contains("hunter2"), "{u}");
        assert!(!format!("{u:?}").contains("hunter2"), "{u:?}");
    }

    #[test]
    fn aliases_and_lists() {
        let env = Env::from_pairs([("NEXT_PUBLIC_SENTRY_DSN", "x"), ("L", "a, b,,c")]);
        assert_eq!(
            env.first_of(&["SENTRY_DSN", "NEXT_PUBLIC_SENTRY_DSN"]),
            Some(("NEXT_PUBLIC_SENTRY_DSN", "x".to_string()))
        );
        assert_eq!(env.list("L"), vec!["a", "b", "c"]);
        assert!(env.list("NONE").is_empty());
    }

    #[test]
    fn secret_errors_never_echo() {
        let env = Env::from_pairs([("KEY", "")]);
        let err = env.required_secret("KEY").unwrap_err();
        assert!(err.to_string().contains("KEY is set but empty"));
        let env = Env::from_pairs([("KEY", "s3cr3t")]);
        let s = env.required_secret("KEY").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
