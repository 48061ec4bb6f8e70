//! The jobs' metrics: per function, attempts, retries, failures, dead letters, run duration
//! and send-to-start latency (recorded as attempts end), cron fires and concurrency-limited
//! waits; and the queue's depth by state and the age of its oldest ready job, set from one
//! stats query per metrics interval ([`JobsRuntime::record_metrics`](crate::JobsRuntime::record_metrics)),
//! never per scrape.
//!
//! A function's handles are registered the first time it runs in this process and kept:
//! the label is its id, from the bounded set of registered functions.

use std::time::Duration;

use metrics::{Counter, Histogram};

use crate::stats::JobsStats;

/// The handles of one function.
pub(crate) struct FunctionMetrics {
    attempts: Counter,
    failures: Counter,
    retries: Counter,
    dead_letters: Counter,
    run_duration: Histogram,
    send_to_start: Histogram,
}

impl FunctionMetrics {
    pub(crate) fn new(function_id: &str) -> Self {
        describe();
        let id = function_id.to_owned();
        FunctionMetrics {
            attempts: metrics::counter!("infra_jobs_attempts_total", "function" => id.clone()),
            failures: metrics::counter!("infra_jobs_failures_total", "function" => id.clone()),
            retries: metrics::counter!("infra_jobs_retries_total", "function" => id.clone()),
            dead_letters: metrics::counter!("infra_jobs_dead_letters_total", "function" => id.clone()),
            run_duration: metrics::histogram!("infra_jobs_run_duration_seconds", "function" => id.clone()),
            send_to_start: metrics::histogram!("infra_jobs_send_to_start_seconds", "function" => id),
        }
    }

    /// An attempt ended: `succeeded`, else retried later or (`dead`) kept as a dead letter.
    pub(crate) fn attempt(&self, succeeded: bool, dead: bool) {
        self.attempts.increment(1);
        if !succeeded {
            self.failures.increment(1);
            if dead {
                self.dead_letters.increment(1);
            } else {
                self.retries.increment(1);
            }
        }
    }

    /// How long the handler ran.
    pub(crate) fn ran(&self, took: Duration) {
        self.run_duration.record(took);
    }

    /// How long a run due at once waited from its event's enqueueing to its first start.
    pub(crate) fn started_after(&self, waited: Duration) {
        self.send_to_start.record(waited);
    }
}

/// A cron trigger of `function_id` fired (a run was planned for it).
pub(crate) fn count_cron_fire(function_id: &str) {
    metrics::counter!("infra_jobs_cron_fires_total", "function" => function_id.to_owned())
        .increment(1);
}

/// A run of `function_id` waited for a concurrency slot.
pub(crate) fn count_concurrency_wait(function_id: &str) {
    metrics::counter!("infra_jobs_concurrency_waits_total", "function" => function_id.to_owned())
        .increment(1);
}

/// Sets the queue gauges from one stats reading.
pub(crate) fn record_queue(stats: &JobsStats) {
    describe();
    for f in &stats.functions {
        let q = &f.queue;
        let id = &q.function_id;
        for (state, n) in [
            ("ready", q.ready),
            ("scheduled", q.scheduled),
            ("running", q.running),
            ("dead", q.dead),
        ] {
            metrics::gauge!("infra_jobs_queue_depth", "function" => id.clone(), "state" => state)
                .set(n as f64);
        }
        metrics::gauge!("infra_jobs_oldest_ready_age_seconds", "function" => id.clone())
            .set(q.oldest_ready_age_ms.unwrap_or(0) as f64 / 1000.0);
    }
}

fn describe() {
    metrics::describe_counter!(
        "infra_jobs_attempts_total",
        "Job attempts that ended in this process, by function."
    );
    metrics::describe_counter!(
        "infra_jobs_failures_total",
        "Job attempts that failed (retried or not), by function."
    );
    metrics::describe_counter!(
        "infra_jobs_retries_total",
        "Failed job attempts that will be retried, by function."
    );
    metrics::describe_counter!(
        "infra_jobs_dead_letters_total",
        "Runs that failed for good and became dead letters, by function."
    );
    metrics::describe_histogram!(
        "infra_jobs_run_duration_seconds",
        metrics::Unit::Seconds,
        "How long a job attempt's handler ran, by function."
    );
    metrics::describe_histogram!(
        "infra_jobs_send_to_start_seconds",
        metrics::Unit::Seconds,
        "From an event's enqueueing to its run's first start, for runs due at once (not delayed), by function."
    );
    metrics::describe_counter!(
        "infra_jobs_cron_fires_total",
        "Cron triggers fired by this process's scheduler, by function."
    );
    metrics::describe_counter!(
        "infra_jobs_concurrency_waits_total",
        "Runs that waited for a concurrency slot of their function, by function."
    );
    metrics::describe_gauge!(
        "infra_jobs_queue_depth",
        "Jobs in the queue by function and state (ready, scheduled, running, dead), read once per INFRA_METRICS_INTERVAL."
    );
    metrics::describe_gauge!(
        "infra_jobs_oldest_ready_age_seconds",
        metrics::Unit::Seconds,
        "How long the oldest due job of a function has waited (queue lag), read once per INFRA_METRICS_INTERVAL."
    );
}
