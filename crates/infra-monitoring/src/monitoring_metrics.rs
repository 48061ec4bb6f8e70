//! The monitoring service's metrics: events handed to the backend and whether it took them.
//!
//! `captured`: the backend accepted the event (the local sink wrote it; the Sentry client
//! queued it for its transport). `dropped`: the Sentry client discarded it before queueing
//! (sampled out by `SENTRY_SAMPLE_RATE`, or no client bound), which it signals with the nil
//! event id.

use std::sync::OnceLock;

use metrics::Counter;

/// The nil event id the Sentry client returns for an event it did not queue.
const NIL_EVENT_ID: &str = "00000000-0000-0000-0000-000000000000";

struct MonitoringMetrics {
    captured: [Counter; 2],
    dropped: [Counter; 2],
}

fn metrics() -> &'static MonitoringMetrics {
    static METRICS: OnceLock<MonitoringMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        metrics::describe_counter!(
            "infra_monitoring_events_total",
            "Error events by backend (local, sentry) and outcome: captured (accepted by the backend), dropped (discarded before sending: sampled out, no client)."
        );
        let counter = |backend: &'static str, outcome: &'static str| {
            metrics::counter!(
                "infra_monitoring_events_total",
                "backend" => backend,
                "outcome" => outcome
            )
        };
        MonitoringMetrics {
            captured: [counter("local", "captured"), counter("sentry", "captured")],
            dropped: [counter("local", "dropped"), counter("sentry", "dropped")],
        }
    })
}

/// Registers the counters (at zero), so that they show before the first event.
pub(crate) fn register() {
    metrics();
}

/// Counts one event handed to `backend` (`local` or `sentry`), by the id it got back.
pub(crate) fn count_event(backend: &str, event_id: &str) {
    let m = metrics();
    let index = usize::from(backend == "sentry");
    if event_id == NIL_EVENT_ID {
        m.dropped[index].increment(1);
    } else {
        m.captured[index].increment(1);
    }
}
