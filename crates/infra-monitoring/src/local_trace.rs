//! Transactions of the local sink: a job run's span (or a request's) written as a JSON
//! line when it ends, with the trace it belongs to — when sampled, as Sentry would send it.
//!
//! The current span lives in a tokio task-local while its body runs, which is where an
//! event sent by the body finds the trace it carries ([`current_trace`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use infra_core::{RunFuture, RunSpan, RunStatus, TraceContext};
use serde_json::{Value, json};

use crate::local_sink::LocalSink;

tokio::task_local! {
    /// The span whose body is being polled.
    pub(crate) static CURRENT: TraceContext;
}

/// The span whose body is running in this task, if any.
pub(crate) fn current_trace() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A span being recorded; its line is written when it finishes.
pub(crate) struct LocalSpan {
    sink: Arc<LocalSink>,
    /// This span's own ids (what children and sent events continue).
    own: TraceContext,
    parent_span_id: Option<String>,
    op: &'static str,
    name: String,
    data: Value,
    start_ms: u64,
    started: Instant,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl LocalSpan {
    /// Starts a span continuing `parent` (a well-formed one; else a new trace).
    pub(crate) fn start(
        sink: Arc<LocalSink>,
        op: &'static str,
        name: impl Into<String>,
        parent: Option<&TraceContext>,
        data: Value,
    ) -> Self {
        let parent = parent.filter(|p| p.is_well_formed());
        let trace_id = parent.map_or_else(
            || format!("{:032x}", rand::random::<u128>() | 1),
            |p| p.trace_id.to_ascii_lowercase(),
        );
        // As Sentry decides: the parent's decision, else `SENTRY_TRACES_SAMPLE_RATE`. An
        // unsampled span still passes its trace on; only its line is not written.
        let sampled = parent
            .and_then(|p| p.sampled)
            .unwrap_or_else(|| rand::random::<f32>() < sink.traces_sample_rate());
        LocalSpan {
            sink,
            own: TraceContext::new(
                trace_id,
                format!("{:016x}", rand::random::<u64>() | 1),
                Some(sampled),
            ),
            parent_span_id: parent.map(|p| p.span_id.to_ascii_lowercase()),
            op,
            name: name.into(),
            data,
            start_ms: now_ms(),
            started: Instant::now(),
        }
    }

    /// The span's own ids: what its children and the events sent inside it continue.
    #[cfg(feature = "tower")]
    pub(crate) fn trace(&self) -> &TraceContext {
        &self.own
    }

    /// Adds a data attribute.
    #[cfg(feature = "tower")]
    pub(crate) fn set_data(&mut self, key: &str, value: Value) {
        if let Value::Object(data) = &mut self.data {
            data.insert(key.to_owned(), value);
        }
    }

    /// Writes the span's line with `status`.
    pub(crate) fn end(&self, status: &str) {
        if self.own.sampled != Some(true) {
            return;
        }
        self.sink.record(
            "transaction",
            json!({
                "op": self.op,
                "name": self.name,
                "trace_id": self.own.trace_id,
                "span_id": self.own.span_id,
                "parent_span_id": self.parent_span_id,
                "status": status,
                "start_timestamp_ms": self.start_ms,
                "duration_ms": self.started.elapsed().as_secs_f64() * 1000.0,
                "data": self.data,
            }),
        );
    }

    /// `body` with this span current.
    pub(crate) fn scope<'a>(&self, body: RunFuture<'a>) -> RunFuture<'a> {
        Box::pin(CURRENT.scope(self.own.clone(), body))
    }
}

impl RunSpan for LocalSpan {
    fn instrument<'a>(&self, body: RunFuture<'a>) -> RunFuture<'a> {
        self.scope(body)
    }

    fn in_scope(&self, f: &mut dyn FnMut()) {
        CURRENT.sync_scope(self.own.clone(), f)
    }

    fn finish(self: Box<Self>, status: RunStatus) {
        self.end(status.as_str());
    }
}
