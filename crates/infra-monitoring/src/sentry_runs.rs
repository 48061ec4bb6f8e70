//! Job runs as Sentry transactions and cron fires as Sentry check-ins.
//!
//! A run's transaction continues the trace its event carries (the `sentry-trace` of the
//! span that sent it) and is the span of a hub of its own while the run's body is polled,
//! so spans the body opens and events it sends belong to the run.

use std::sync::Arc;

use infra_core::{CronCheckIn, RunFuture, RunSpan, RunStart, RunStatus, TraceContext};
use sentry::protocol::{Envelope, MonitorCheckIn, MonitorSchedule, SpanStatus};
use sentry::{Hub, SentryFutureExt, TransactionContext};

use crate::check_in::CheckInPayload;

/// The trace of the span on the current hub's scope (a request's or a run's transaction).
pub(crate) fn current_trace() -> Option<TraceContext> {
    let span = sentry::configure_scope(|scope| scope.get_span())?;
    // The propagation header, not the span's fields: it carries the sampling decision as
    // Sentry propagates it.
    span.iter_headers()
        .find(|(name, _)| *name == "sentry-trace")
        .and_then(|(_, value)| TraceContext::from_sentry_trace(&value))
}

/// A run's transaction and the hub its body runs on.
pub(crate) struct SentryRunSpan {
    hub: Arc<Hub>,
    transaction: sentry::Transaction,
}

pub(crate) fn start_run(run: &RunStart<'_>) -> SentryRunSpan {
    let header;
    let context = match run.trace.filter(|t| t.is_well_formed()) {
        Some(trace) => {
            header = trace.sentry_trace();
            TransactionContext::continue_from_headers(
                run.function_id,
                RunStart::SPAN_OP,
                [("sentry-trace", header.as_str())],
            )
        }
        None => TransactionContext::new(run.function_id, RunStart::SPAN_OP),
    };
    let hub = Arc::new(Hub::new_from_top(Hub::current()));
    let transaction = hub.start_transaction(context);
    transaction.set_origin("auto.queue.infra_jobs");
    transaction.set_data("messaging.system", "infra_jobs".into());
    transaction.set_data("messaging.destination.name", run.function_id.into());
    transaction.set_data("messaging.message.id", run.job_id.into());
    transaction.set_data(
        "messaging.message.retry.count",
        (run.attempt.saturating_sub(1)).into(),
    );
    transaction.set_data("messaging.message.receive.latency", run.waited_ms.into());
    transaction.set_data("event.name", run.event_name.into());
    hub.configure_scope(|scope| scope.set_span(Some(transaction.clone().into())));
    SentryRunSpan { hub, transaction }
}

impl RunSpan for SentryRunSpan {
    fn instrument<'a>(&self, body: RunFuture<'a>) -> RunFuture<'a> {
        Box::pin(body.bind_hub(self.hub.clone()))
    }

    fn in_scope(&self, f: &mut dyn FnMut()) {
        Hub::run(self.hub.clone(), f)
    }

    fn finish(self: Box<Self>, status: RunStatus) {
        self.transaction.set_status(match status {
            RunStatus::Completed | RunStatus::Parked => SpanStatus::Ok,
            RunStatus::Retrying | RunStatus::Dead => SpanStatus::InternalError,
            RunStatus::Cancelled => SpanStatus::Cancelled,
            RunStatus::Abandoned => SpanStatus::Aborted,
        });
        self.transaction.set_tag("job.outcome", status.as_str());
        self.transaction.finish();
    }
}

/// Sends `check_in` as a `check_in` envelope item through the current hub's client.
pub(crate) fn send_check_in(check_in: &CronCheckIn, environment: &str) {
    let Some(client) = Hub::current().client() else {
        return;
    };
    let payload = CheckInPayload::new(check_in, environment);
    let Ok(mut item) =
        serde_json::to_value(&payload).and_then(serde_json::from_value::<MonitorCheckIn>)
    else {
        return;
    };
    // Sentry refuses the whole check-in over a schedule its validator rejects.
    if let Some(config) = &item.monitor_config
        && let MonitorSchedule::Crontab { value } = &config.schedule
        && MonitorSchedule::from_crontab(value).is_err()
    {
        item.monitor_config = None;
    }
    client.send_envelope(Envelope::from(item));
}
