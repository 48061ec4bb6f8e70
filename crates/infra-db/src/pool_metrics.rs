//! The database's metrics, by the OpenTelemetry database-client conventions
//! (`db.client.connection.*`, exposed with underscores; `db.client.connection.count` as
//! `db_client_connections`, since Prometheus reserves the `_count` suffix for histograms and
//! summaries and `promtool check metrics` refuses it on a gauge): the pool's connections by state, its
//! size limit and waiters (refreshed once per metrics interval), the acquire wait, acquire
//! timeouts, query errors by SQLSTATE class, and the replicas' health.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use crate::connection_manager::Pool;

/// The handles a `Database` records through, registered once when it is built.
pub(crate) struct PoolMetrics {
    idle: Gauge,
    used: Gauge,
    max: Gauge,
    pending: Gauge,
    wait_time: Histogram,
    timeouts: Counter,
    replicas_healthy: Gauge,
    replicas_down: Gauge,
}

impl PoolMetrics {
    pub(crate) fn new() -> Self {
        describe();
        PoolMetrics {
            idle: metrics::gauge!("db_client_connections", "state" => "idle"),
            used: metrics::gauge!("db_client_connections", "state" => "used"),
            max: metrics::gauge!("db_client_connection_max"),
            pending: metrics::gauge!("db_client_connection_pending_requests"),
            wait_time: metrics::histogram!("db_client_connection_wait_time_seconds"),
            timeouts: metrics::counter!("db_client_connection_timeouts_total"),
            replicas_healthy: metrics::gauge!("db_client_replicas", "state" => "healthy"),
            replicas_down: metrics::gauge!("db_client_replicas", "state" => "down"),
        }
    }

    /// One checkout of the primary's pool took `waited`.
    pub(crate) fn acquired(&self, waited: Duration) {
        self.wait_time.record(waited);
    }

    /// A checkout gave up after the acquire timeout.
    pub(crate) fn timed_out(&self) {
        self.timeouts.increment(1);
    }

    /// Reads the pool's state into the gauges (once per metrics interval).
    pub(crate) fn sample(&self, pool: &Pool, replicas_healthy: usize, replicas_down: usize) {
        let status = pool.status();
        let used = status.size.saturating_sub(status.available);
        self.idle.set(status.available as f64);
        self.used.set(used as f64);
        self.max.set(status.max_size as f64);
        self.pending.set(status.waiting as f64);
        self.replicas_healthy.set(replicas_healthy as f64);
        self.replicas_down.set(replicas_down as f64);
    }
}

/// Counts a query error by its SQLSTATE's class (its first two characters: `23` for
/// integrity violations, `40` for transaction rollbacks, …): a bounded label.
pub(crate) fn count_query_error(sqlstate: &str) {
    let class = sqlstate.get(..2).unwrap_or("??");
    // Errors are rare: the registry look-up (and the label's allocation) is paid only then.
    metrics::counter!("db_client_query_errors_total", "class" => class.to_owned()).increment(1);
}

fn describe() {
    metrics::describe_gauge!(
        "db_client_connections",
        "Connections of the primary's pool by state (idle, used)."
    );
    metrics::describe_gauge!(
        "db_client_connection_max",
        "The most connections the primary's pool opens (DATABASE_POOL_MAX)."
    );
    metrics::describe_gauge!(
        "db_client_connection_pending_requests",
        "Checkouts waiting for a connection of the primary's pool."
    );
    metrics::describe_histogram!(
        "db_client_connection_wait_time_seconds",
        metrics::Unit::Seconds,
        "Time to check a connection out of the primary's pool."
    );
    metrics::describe_counter!(
        "db_client_connection_timeouts_total",
        "Checkouts of the primary's pool that gave up after the acquire timeout."
    );
    metrics::describe_counter!(
        "db_client_query_errors_total",
        "Query errors PostgreSQL reported, by SQLSTATE class (first two characters)."
    );
    metrics::describe_gauge!(
        "db_client_replicas",
        "Read replicas by state: healthy, or down (left out after a failed checkout)."
    );
}
