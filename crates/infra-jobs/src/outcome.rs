//! What a function run returns.
//!
//! Invariants: only a `Retry` is tried again, and only while attempts remain (its own delay,
//! else the function's back-off); a `Fail` makes the run a dead letter at once, whatever
//! attempts remain; an `Error` maps by its retryability.

use std::time::Duration;

use infra_core::Error;

/// The result of one run of a function.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; the value is the function's output (`null` when it has none).
    Success(serde_json::Value),
    /// Failed, try again: after `after` when given, else after the function's backoff.
    Retry {
        /// Why it failed.
        error: String,
        /// When to retry, overriding the backoff.
        after: Option<Duration>,
    },
    /// Failed for good: no more attempts; the run becomes a dead letter.
    Fail {
        /// Why it failed.
        error: String,
    },
}

impl Outcome {
    /// Success without output.
    pub fn success() -> Self {
        Outcome::Success(serde_json::Value::Null)
    }

    /// A retryable failure that follows the backoff.
    pub fn retry(error: impl Into<String>) -> Self {
        Outcome::Retry {
            error: error.into(),
            after: None,
        }
    }

    /// A retryable failure retried after `after`.
    pub fn retry_after(error: impl Into<String>, after: Duration) -> Self {
        Outcome::Retry {
            error: error.into(),
            after: Some(after),
        }
    }

    /// A non-retryable failure.
    pub fn fail(error: impl Into<String>) -> Self {
        Outcome::Fail {
            error: error.into(),
        }
    }

    /// `true` for [`Outcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success(_))
    }
}

impl From<()> for Outcome {
    fn from(_: ()) -> Self {
        Outcome::success()
    }
}

/// A retryable [`Error`] (by kind or override) retries, honouring its `retry_after`; any
/// other error fails for good.
impl From<Error> for Outcome {
    fn from(err: Error) -> Self {
        if err.is_retryable() {
            Outcome::Retry {
                after: err.retry_after(),
                error: err.to_string(),
            }
        } else {
            Outcome::fail(err.to_string())
        }
    }
}

impl<T: Into<Outcome>> From<Result<T, Error>> for Outcome {
    fn from(result: Result<T, Error>) -> Self {
        match result {
            Ok(v) => v.into(),
            Err(e) => e.into(),
        }
    }
}

impl From<serde_json::Value> for Outcome {
    fn from(value: serde_json::Value) -> Self {
        Outcome::Success(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra_core::ErrorKind;

    #[test]
    fn errors_map_by_retryability() {
        let out: Outcome = Err::<(), _>(
            Error::new(ErrorKind::RateLimited, "slow down")
                .with_retry_after(Duration::from_secs(3)),
        )
        .into();
        assert_eq!(
            out,
            Outcome::Retry {
                error: "rate limited: slow down".into(),
                after: Some(Duration::from_secs(3))
            }
        );
        let out: Outcome = Err::<(), _>(Error::invalid_input("x", "bad")).into();
        assert!(matches!(out, Outcome::Fail { .. }));
        assert!(Outcome::from(Ok::<(), Error>(())).is_success());
    }
}
