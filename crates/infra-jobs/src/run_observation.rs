//! What a worker tells the app's [`RunMonitor`] about one attempt: the run's span
//! (continuing the trace its event carries) and, for a cron fire, its check-ins.
//!
//! A cron fire's check-ins share the fire's event id as their key, so a retried fire keeps
//! one check-in open (in progress again on every attempt) until it completes or dies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infra_core::{
    CheckInStatus, ClaimedJob, CronCheckIn, RunFuture, RunMonitor, RunSpan, RunStart, RunStatus,
};

use crate::event_id::now_ms;
use crate::function::{CRON_EVENT_NAME, Function};

/// One attempt under observation; [`finish`](RunObservation::finish) ends it. Dropped
/// unfinished, it ends as abandoned.
pub(crate) struct RunObservation {
    monitor: Option<Arc<dyn RunMonitor>>,
    span: Option<Box<dyn RunSpan>>,
    /// The in-progress check-in of a cron fire, to close with the outcome.
    check_in: Option<CronCheckIn>,
    started: Instant,
}

impl RunObservation {
    /// Starts observing `job` of `function`; nothing is recorded without a monitor.
    pub(crate) fn start(
        monitor: Option<Arc<dyn RunMonitor>>,
        function: &Function,
        job: &ClaimedJob,
    ) -> Self {
        let started = Instant::now();
        let Some(m) = monitor.as_ref() else {
            return RunObservation {
                monitor,
                span: None,
                check_in: None,
                started,
            };
        };
        let job_id = job.id.to_string();
        let span = m.start_run(&RunStart {
            function_id: function.id(),
            job_id: &job_id,
            event_name: &job.event.name,
            attempt: job.attempt,
            waited_ms: (now_ms() - job.run_at_ms).max(0),
            trace: job.event.trace.as_ref(),
        });
        let check_in = cron_check_in(function, job);
        if let Some(c) = &check_in {
            m.check_in(c);
        }
        RunObservation {
            monitor,
            span: Some(span),
            check_in,
            started,
        }
    }

    /// `body` inside the run's span.
    pub(crate) fn wrap<'a>(&self, body: RunFuture<'a>) -> RunFuture<'a> {
        match &self.span {
            Some(span) => span.instrument(body),
            None => body,
        }
    }

    /// `f` inside the run's span (a `tracing` span made there is the run span's child).
    pub(crate) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        let Some(span) = &self.span else {
            return f();
        };
        let mut f = Some(f);
        let mut out = None;
        span.in_scope(&mut || out = f.take().map(|f| f()));
        out.expect("a RunSpan runs what it is given")
    }

    /// Ends the span with `status` and closes a cron fire's check-in when the fire is over.
    /// `inner`, the worker's `tracing` span of the run, is closed first: a child still open
    /// when its transaction ends is left out of it.
    pub(crate) fn finish(mut self, status: RunStatus, inner: tracing::Span) {
        drop(inner);
        self.end(status);
    }

    fn end(&mut self, status: RunStatus) {
        if let Some(span) = self.span.take() {
            span.finish(status);
        }
        let closing = match status {
            RunStatus::Completed => Some(CheckInStatus::Ok),
            RunStatus::Dead | RunStatus::Cancelled => Some(CheckInStatus::Error),
            // The fire is not over: its next attempt (or resumption) checks in again.
            RunStatus::Retrying | RunStatus::Parked | RunStatus::Abandoned => None,
        };
        if let (Some(monitor), Some(mut check_in), Some(closing)) =
            (self.monitor.as_ref(), self.check_in.take(), closing)
        {
            check_in.status = closing;
            check_in.duration = Some(self.started.elapsed());
            monitor.check_in(&check_in);
        }
    }
}

impl Drop for RunObservation {
    fn drop(&mut self) {
        if self.span.is_some() {
            self.end(RunStatus::Abandoned);
        }
    }
}

/// The in-progress check-in of `job` when it is a cron fire of `function`.
fn cron_check_in(function: &Function, job: &ClaimedJob) -> Option<CronCheckIn> {
    if job.event.name != CRON_EVENT_NAME {
        return None;
    }
    let schedule = job.event.data["cron"].as_str()?.to_owned();
    Some(CronCheckIn {
        function_id: function.id().to_owned(),
        fire_key: job
            .event
            .id
            .clone()
            .unwrap_or_else(|| format!("{}:{}", function.id(), job.id)),
        schedule,
        max_runtime: function.options().timeout.max(Duration::from_secs(1)),
        status: CheckInStatus::InProgress,
        duration: None,
    })
}
