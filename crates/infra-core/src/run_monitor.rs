//! The `RunMonitor` trait: job runs as traced transactions and cron fires as check-ins.
//!
//! The jobs runtime reports through it and never names a monitoring backend; a monitoring
//! service (Sentry, a local sink) implements it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::trace_context::TraceContext;

/// A boxed future a run span wraps (the run's body).
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One attempt of a job run starting.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    /// The function's id.
    pub function_id: &'a str,
    /// The job's id in its queue.
    pub job_id: &'a str,
    /// The event's name.
    pub event_name: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Milliseconds between the time the job was due and this start.
    pub waited_ms: i64,
    /// The trace the event was sent in, if any: the run continues it.
    pub trace: Option<&'a TraceContext>,
}

impl RunStart<'_> {
    /// The `op` of a run's span on every backend: Sentry's name for processing a queued
    /// message, which its queue views group by.
    pub const SPAN_OP: &'static str = "queue.process";
}

/// How an attempt of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// The function returned successfully.
    Completed,
    /// The attempt failed; the job runs again later.
    Retrying,
    /// The attempt failed for good; the job is a dead letter.
    Dead,
    /// The run's cancellation was asked for.
    Cancelled,
    /// A step (sleep, wait, invoke) parked the run; it resumes later.
    Parked,
    /// The attempt ended without a settlement (shutdown, a failed park).
    Abandoned,
}

impl RunStatus {
    /// `ok`, `retrying`, `dead`, `cancelled`, `parked` or `abandoned`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "ok",
            RunStatus::Retrying => "retrying",
            RunStatus::Dead => "dead",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Parked => "parked",
            RunStatus::Abandoned => "abandoned",
        }
    }
}

/// A running attempt's span: it wraps the run's body (so what the body does, events it
/// sends included, is inside the span) and is finished with the attempt's status.
pub trait RunSpan: Send + Sync {
    /// The body, run inside this span.
    fn instrument<'a>(&self, body: RunFuture<'a>) -> RunFuture<'a>;

    /// Runs `f` inside this span, synchronously: `tracing` spans created in `f` become
    /// children of this one rather than spans of their own.
    fn in_scope(&self, f: &mut dyn FnMut());

    /// Ends the span.
    fn finish(self: Box<Self>, status: RunStatus);
}

/// The status of a cron check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckInStatus {
    /// The fire started.
    InProgress,
    /// The fire's run succeeded.
    Ok,
    /// The fire's run failed for good (or was cancelled).
    Error,
}

/// A check-in of a cron function's fire.
#[derive(Debug, Clone)]
pub struct CronCheckIn {
    /// The monitor: the function's id.
    pub function_id: String,
    /// The same for every check-in of one fire (its event id), so retries and the closing
    /// check-in update the check-in the fire opened.
    pub fire_key: String,
    /// The cron expression as written (five fields, or six with seconds first, in UTC).
    pub schedule: String,
    /// How long a run may take (the function's timeout).
    pub max_runtime: Duration,
    /// In progress, ok or error.
    pub status: CheckInStatus,
    /// How long the attempt ran, on a closing check-in.
    pub duration: Option<Duration>,
}

/// Receives job runs and cron check-ins; see the module docs.
pub trait RunMonitor: Send + Sync {
    /// The trace an event sent now belongs to (the current request's or run's span), to
    /// carry inside the event; `None` outside any span.
    fn current_trace(&self) -> Option<TraceContext>;

    /// Starts the span of one attempt of a run.
    fn start_run(&self, run: &RunStart<'_>) -> Box<dyn RunSpan>;

    /// Records a cron check-in.
    fn check_in(&self, check_in: &CronCheckIn);
}
