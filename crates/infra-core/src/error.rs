//! The one error type every adapter returns.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// A boxed error from a client library, kept as the [`Error`]'s source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, independent of which backend raised it.
///
/// Callers branch on the kind; the message and the source say the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A configuration value is missing or malformed; [`Error::variable`] names it.
    Config,
    /// The backend could not be reached (refused, reset, DNS, pool closed).
    Unavailable,
    /// The operation did not finish within its deadline.
    Timeout,
    /// The caller passed something the operation refuses; [`Error::field`] names it.
    InvalidInput,
    /// A uniqueness or concurrency conflict (unique violation, serialization failure).
    Conflict,
    /// The thing asked for does not exist.
    NotFound,
    /// A rate limit refused the call; [`Error::retry_after`] may say when to retry.
    RateLimited,
    /// Stored or received data could not be decoded into the asked type.
    Decode,
    /// Any other failure reported by the backend.
    Backend,
}

impl ErrorKind {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::RateLimited
        )
    }

    /// The kind of a non-success HTTP reply from a service's API: 400/413/422 refused input,
    /// 401/403 a bad credential (a configuration problem), 404 not found, 408 a timeout,
    /// 429 rate limited, 5xx unavailable, anything else a backend error. One mapping for every
    /// HTTP client in the workspace.
    ///
    /// ```
    /// use infra_core::ErrorKind;
    /// assert_eq!(ErrorKind::from_http_status(429), ErrorKind::RateLimited);
    /// assert_eq!(ErrorKind::from_http_status(503), ErrorKind::Unavailable);
    /// assert_eq!(ErrorKind::from_http_status(401), ErrorKind::Config);
    /// ```
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            400 | 413 | 422 => ErrorKind::InvalidInput,
            401 | 403 => ErrorKind::Config,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Backend,
        }
    }

    /// A short, stable, snake_case name, used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotFound => "not_found",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Decode => "decode",
            ErrorKind::Backend => "backend",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ErrorKind::Config => "configuration error",
            ErrorKind::Unavailable => "service unavailable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotFound => "not found",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Decode => "decode error",
            ErrorKind::Backend => "backend error",
        };
        f.write_str(text)
    }
}

/// The error type of every `infra` crate.
///
/// It carries a [`ErrorKind`], a human message that never contains a secret, optional
/// structured context (the variable, field or key concerned, a backend code such as a SQLSTATE)
/// and the client library's error as its source.
///
/// ```
/// use infra_core::{Error, ErrorKind};
///
/// let err = Error::config("DATABASE_URL", "is not set");
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert_eq!(err.variable(), Some("DATABASE_URL"));
/// assert_eq!(err.to_string(), "configuration error: DATABASE_URL is not set");
/// assert!(!err.is_retryable());
/// ```
#[derive(thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    context: Vec<(&'static str, String)>,
    retryable: Option<bool>,
    retry_after: Option<Duration>,
    #[source]
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            kind,
            message: message.into(),
            context: Vec::new(),
            retryable: None,
            retry_after: None,
            source: None,
        }
    }

    /// A configuration error naming the variable and why it is refused.
    ///
    /// `problem` must describe the value, never repeat it when it may be secret.
    pub fn config(variable: &str, problem: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Config, format!("{variable} {problem}"))
            .with_context("variable", variable)
    }

    /// An invalid-input error naming the field and the rule it breaks.
    pub fn invalid_input(field: &str, rule: impl fmt::Display) -> Self {
        Error::new(ErrorKind::InvalidInput, format!("`{field}` {rule}"))
            .with_context("field", field)
    }

    /// The backend could not be reached.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::Unavailable, message)
    }

    /// The operation ran past its deadline.
    pub fn timeout(operation: &str, after: Duration) -> Self {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "{operation} timed out after {}",
                crate::duration::format_duration(after)
            ),
        )
    }

    /// A backend failure that fits no other kind.
    pub fn backend(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::Backend, message)
    }

    /// Adds a `key = value` pair of context (a key name, a SQLSTATE, a backend name).
    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.context.push((key, value.into()));
        self
    }

    /// Sets the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Overrides whether the error is retryable (for example a serialization failure).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = Some(retryable);
        self
    }

    /// Says when a rate-limited call may be retried.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying later may succeed: by kind unless overridden.
    pub fn is_retryable(&self) -> bool {
        self.retryable.unwrap_or_else(|| self.kind.is_retryable())
    }

    /// When a rate-limited call may be retried, if the backend said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Looks up a context value by key.
    pub fn context(&self, key: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All context pairs, in the order they were added.
    pub fn context_pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.context.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The configuration variable concerned, for [`ErrorKind::Config`] errors.
    pub fn variable(&self) -> Option<&str> {
        self.context("variable")
    }

    /// The input field concerned, for [`ErrorKind::InvalidInput`] errors.
    pub fn field(&self) -> Option<&str> {
        self.context("field")
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if !self.context.is_empty() {
            d.field("context", &self.context);
        }
        if let Some(after) = self.retry_after {
            d.field("retry_after", &after);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::new(ErrorKind::Decode, format!("JSON: {err}")).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_kind_unless_overridden() {
        assert!(Error::unavailable("refused").is_retryable());
        assert!(Error::timeout("GET", Duration::from_millis(250)).is_retryable());
        assert!(!Error::new(ErrorKind::Conflict, "unique").is_retryable());
        assert!(
            Error::new(ErrorKind::Conflict, "serialization failure")
                .with_retryable(true)
                .is_retryable()
        );
    }

    #[test]
    fn display_names_field_and_rule() {
        let err = Error::invalid_input("key", "must not be empty");
        assert_eq!(err.to_string(), "invalid input: `key` must not be empty");
        assert_eq!(err.field(), Some("key"));
    }

    #[test]
    fn timeout_message_has_duration() {
        let err = Error::timeout("redis GET", Duration::from_millis(1500));
        assert_eq!(err.to_string(), "timed out: redis GET timed out after 1.5s");
    }

    #[test]
    fn source_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::unavailable("connect").with_source(io);
        let source = std::error::Error::source(&err).expect("source");
        assert_eq!(source.to_string(), "refused");
    }
}
