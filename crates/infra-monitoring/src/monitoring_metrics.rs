//! The monitoring service's metrics: events handed to the backend and whether it took them.
//!
//! `captured`: the backend accepted the event (the local sink wrote it; the Sentry client
//! queued it for its transport). `dropped`: the Sentry client discarded it before queueing
//! (sampled out by `SENTRY_SAMPLE_RATE`, or no client bound), which it signals with the nil
//! event id. Registered when the service is built, with the recorder installed then.

use metrics::Counter;

/// The nil event id the Sentry client returns for an event it did not queue.
const NIL_EVENT_ID: &str = "00000000-0000-0000-0000-000000000000";

/// The handles of one monitoring service.
pub(crate) struct MonitoringMetrics {
    captured: Counter,
    dropped: Counter,
}

impl MonitoringMetrics {
    /// The handles for `backend` (`local` or `sentry`).
    pub(crate) fn new(backend: &'static str) -> Self {
        metrics::describe_counter!(
            "infra_monitoring_events_total",
            "Error events by backend (local, sentry) and outcome: captured (accepted by the backend), dropped (discarded before sending: sampled out, no client)."
        );
        let counter = |outcome: &'static str| {
            metrics::counter!(
                "infra_monitoring_events_total",
                "backend" => backend,
                "outcome" => outcome
            )
        };
        MonitoringMetrics {
            captured: counter("captured"),
            dropped: counter("dropped"),
        }
    }

    /// Counts one event by the id the backend gave back.
    pub(crate) fn count_event(&self, event_id: &str) {
        if event_id == NIL_EVENT_ID {
            self.dropped.increment(1);
        } else {
            self.captured.increment(1);
        }
    }
}
