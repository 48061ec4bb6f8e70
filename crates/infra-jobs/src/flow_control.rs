//! Flow control of a function beyond concurrency, as Inngest names it: `throttle`,
//! `rate_limit`, `batch_events`, `singleton`, ordering per key, and a debounce's maximum
//! wait. Each takes an optional key expression (the CEL subset of [`expression`]), evaluated
//! on the event: runs with equal keys share the limit; an event whose key does not evaluate
//! shares the key `""`.
//!
//! The queue enforces them from the values the runtime computes per job
//! ([`infra_core::JobThrottle`] and its siblings), across every process sharing it.

use std::time::Duration;

use infra_core::{Event, Result, SingletonMode};

use crate::expression::{Bindings, Expr, key_text};

/// The recorded step holding a batched run's events (`{"data": [event, …]}`, the first being
/// the job's own event), which [`JobContext::events`](crate::JobContext::events) reads.
pub(crate) const BATCH_STEP_ID: &str = "inngest/batch";

/// A key expression, such as `event.data.userId` or `event.data.a + "-" + event.data.b`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyExpression {
    text: String,
    expr: Expr,
}

impl KeyExpression {
    /// Parses `text`; an expression outside the subset is an `InvalidInput` error naming
    /// `field`.
    pub fn parse(text: &str, field: &str) -> Result<Self> {
        Ok(KeyExpression {
            expr: Expr::parse(text, field)?,
            text: text.to_owned(),
        })
    }

    /// The expression as written (what the sync payload declares to Inngest).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The key of `event`: a string's characters, another value's JSON; `None` when it does
    /// not evaluate (a missing field).
    pub fn evaluate(&self, event: &Event) -> Option<String> {
        let json = serde_json::to_value(event).ok()?;
        let value = self
            .expr
            .eval(Bindings {
                event: Some(&json),
                async_event: None,
            })
            .ok()?;
        key_text(&value)
    }
}

/// The key `key` gives `event`, `""` without a key or when it does not evaluate.
pub(crate) fn key_of(key: &Option<KeyExpression>, event: &Event) -> String {
    key.as_ref()
        .and_then(|k| k.evaluate(event))
        .unwrap_or_default()
}

/// At most `limit` runs start per `period` per key, `burst` at once; excess runs wait.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttle {
    /// Runs per period.
    pub limit: u32,
    /// The period.
    pub period: Duration,
    /// Runs that may start at once (default 1).
    pub burst: u32,
    /// Throttled per value of this key, else over all runs.
    pub key: Option<KeyExpression>,
}

/// At most `limit` runs per `period` per key; excess events start no run and are counted.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Runs per period.
    pub limit: u32,
    /// The period.
    pub period: Duration,
    /// Limited per value of this key, else over all runs.
    pub key: Option<KeyExpression>,
}

/// Up to `max_size` events per key, or those that arrived within `timeout` of the first, in
/// one run; the handler reads them from [`JobContext::events`](crate::JobContext::events).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchEvents {
    /// Most events in one run.
    pub max_size: u32,
    /// The longest the first event waits for others.
    pub timeout: Duration,
    /// Batched per value of this key, else all together.
    pub key: Option<KeyExpression>,
}

/// One run at a time per key: a new run is skipped, or cancels the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Singleton {
    /// Skip the new run or cancel the others.
    pub mode: SingletonMode,
    /// Per value of this key, else over all runs.
    pub key: Option<KeyExpression>,
}

/// Runs of one key start one after another, in send order.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordering {
    /// Ordered per value of this key, else all runs of the function.
    pub key: Option<KeyExpression>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_evaluate_on_the_event() {
        let key = KeyExpression::parse("event.data.a + '-' + event.data.b", "key").unwrap();
        let event = Event::new("x", json!({"a": "u1", "b": "c2"}));
        assert_eq!(key.evaluate(&event).as_deref(), Some("u1-c2"));
        assert_eq!(key.evaluate(&Event::new("x", json!({}))), None);
        assert_eq!(key_of(&Some(key), &Event::new("x", json!({}))), "");
        assert!(KeyExpression::parse("event.data.", "key").is_err());
    }
}
