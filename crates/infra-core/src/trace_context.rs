//! `TraceContext`: where a distributed trace continues, carried inside an event.

use serde::{Deserialize, Serialize};

/// The trace an event was sent in: a job run for the event continues it, so the request
/// that sent the event, the run and what the run does are one trace.
///
/// Ids are lowercase hex as Sentry and W3C Trace Context write them (32 digits for the
/// trace, 16 for the span). An event from outside can carry anything here: a reporter that
/// cannot read it starts a new trace instead ([`TraceContext::is_well_formed`]).
///
/// ```
/// use infra_core::TraceContext;
/// let trace = TraceContext::new("771a43a4192642f0b136d5159a501700", "b0e6f15b45c36b12", Some(true));
/// assert_eq!(trace.sentry_trace(), "771a43a4192642f0b136d5159a501700-b0e6f15b45c36b12-1");
/// assert!(trace.is_well_formed());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The trace's id (32 hex digits).
    pub trace_id: String,
    /// The span that sent the event: the parent of the run's span (16 hex digits).
    pub span_id: String,
    /// The sender's sampling decision, which the run follows; `None` lets the run decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<bool>,
}

impl TraceContext {
    /// A context continuing `trace_id` under the span `span_id`.
    pub fn new(
        trace_id: impl Into<String>,
        span_id: impl Into<String>,
        sampled: Option<bool>,
    ) -> Self {
        TraceContext {
            trace_id: trace_id.into(),
            span_id: span_id.into(),
            sampled,
        }
    }

    /// The `sentry-trace` header value: `{trace_id}-{span_id}[-{0|1}]`.
    pub fn sentry_trace(&self) -> String {
        match self.sampled {
            Some(sampled) => format!("{}-{}-{}", self.trace_id, self.span_id, u8::from(sampled)),
            None => format!("{}-{}", self.trace_id, self.span_id),
        }
    }

    /// Reads a `sentry-trace` header value; `None` when it is not one.
    pub fn from_sentry_trace(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let sampled = match parts.next() {
            None => None,
            Some("1") => Some(true),
            Some("0") => Some(false),
            Some(_) => return None,
        };
        let context = TraceContext::new(trace_id, span_id, sampled);
        (parts.next().is_none() && context.is_well_formed()).then_some(context)
    }

    /// Whether both ids are hex of the right length and not all zeros.
    pub fn is_well_formed(&self) -> bool {
        fn hex_id(id: &str, len: usize) -> bool {
            id.len() == len
                && id.bytes().all(|b| b.is_ascii_hexdigit())
                && id.bytes().any(|b| b != b'0')
        }
        hex_id(&self.trace_id, 32) && hex_id(&self.span_id, 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_ids_are_told_apart() {
        assert!(!TraceContext::new("abc", "b0e6f15b45c36b12", None).is_well_formed());
        assert!(!TraceContext::new("0".repeat(32), "b0e6f15b45c36b12", None).is_well_formed());
        assert!(!TraceContext::new("z".repeat(32), "b0e6f15b45c36b12", None).is_well_formed());
        let ok = TraceContext::new("771a43a4192642f0b136d5159a501700", "b0e6f15b45c36b12", None);
        assert!(ok.is_well_formed());
        assert_eq!(
            ok.sentry_trace(),
            "771a43a4192642f0b136d5159a501700-b0e6f15b45c36b12"
        );
        assert_eq!(
            TraceContext::from_sentry_trace(&ok.sentry_trace()),
            Some(ok.clone())
        );
        let sampled = TraceContext {
            sampled: Some(false),
            ..ok
        };
        assert_eq!(
            TraceContext::from_sentry_trace(&sampled.sentry_trace()),
            Some(sampled)
        );
        assert_eq!(TraceContext::from_sentry_trace("abc-def-1"), None);
        assert_eq!(
            TraceContext::from_sentry_trace("771a43a4192642f0b136d5159a501700-b0e6f15b45c36b12-2"),
            None
        );
    }
}
