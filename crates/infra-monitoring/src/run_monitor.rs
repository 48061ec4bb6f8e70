//! `Monitoring` as the jobs runtime's [`RunMonitor`]: runs become transactions and cron
//! fires check-ins, on Sentry or as lines of the local sink.

use std::sync::Arc;

use infra_core::{CronCheckIn, RunMonitor, RunSpan, RunStart, TraceContext};
use serde_json::json;

use crate::check_in::CheckInPayload;
use crate::local_trace::LocalSpan;
use crate::monitoring::{Backend, Monitoring};

impl Monitoring {
    /// The service as the jobs runtime's run monitor
    /// (`jobs.set_monitor(monitoring.run_monitor())`).
    pub fn run_monitor(&self) -> Arc<dyn RunMonitor> {
        Arc::new(self.clone())
    }
}

impl RunMonitor for Monitoring {
    fn current_trace(&self) -> Option<TraceContext> {
        match &self.backend {
            Backend::Local(_) => crate::local_trace::current_trace(),
            #[cfg(feature = "sentry")]
            Backend::Sentry(_) => crate::sentry_runs::current_trace(),
        }
    }

    fn start_run(&self, run: &RunStart<'_>) -> Box<dyn RunSpan> {
        match &self.backend {
            Backend::Local(sink) => Box::new(LocalSpan::start(
                sink.clone(),
                RunStart::SPAN_OP,
                run.function_id,
                run.trace,
                json!({
                    "messaging.destination.name": run.function_id,
                    "messaging.message.id": run.job_id,
                    "messaging.message.retry.count": run.attempt.saturating_sub(1),
                    "messaging.message.receive.latency": run.waited_ms,
                    "event.name": run.event_name,
                }),
            )),
            #[cfg(feature = "sentry")]
            Backend::Sentry(_) => Box::new(crate::sentry_runs::start_run(run)),
        }
    }

    fn check_in(&self, check_in: &CronCheckIn) {
        match &self.backend {
            Backend::Local(sink) => {
                let payload = CheckInPayload::new(check_in, &self.config.environment);
                sink.record(
                    "check_in",
                    serde_json::to_value(payload).unwrap_or_default(),
                );
            }
            #[cfg(feature = "sentry")]
            Backend::Sentry(_) => {
                crate::sentry_runs::send_check_in(check_in, &self.config.environment)
            }
        }
    }
}
