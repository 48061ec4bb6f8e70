//! The cache's metrics: hits and misses, and per operation its errors and (on the networked
//! backends) its latency; rate-limit decisions by outcome; the memory cache's size.
//!
//! Every handle is registered once, when the backend is built, with labels from bounded
//! sets (backend, operation, outcome): recording is an atomic add, never a look-up. The
//! memory backend records no latency: its operations take well under a microsecond, and two
//! clock reads would cost more than the operation.

use std::future::Future;
use std::time::Instant;

use infra_core::{RateLimitDecision, Result};
use metrics::{Counter, Gauge, Histogram};

/// One operation's handles.
pub(crate) struct OpMetrics {
    duration: Histogram,
    errors: Counter,
}

impl OpMetrics {
    fn new(backend: &'static str, operation: &'static str) -> Self {
        OpMetrics {
            duration: metrics::histogram!(
                "infra_cache_command_duration_seconds",
                "backend" => backend,
                "operation" => operation
            ),
            errors: metrics::counter!(
                "infra_cache_errors_total",
                "backend" => backend,
                "operation" => operation
            ),
        }
    }

    /// Runs `op`, recording its duration and whether it failed.
    pub(crate) async fn timed<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = op.await;
        self.duration.record(started.elapsed());
        if result.is_err() {
            self.errors.increment(1);
        }
        result
    }
}

/// The handles of one cache backend.
pub(crate) struct CacheMetrics {
    hits: Counter,
    misses: Counter,
    pub(crate) get: OpMetrics,
    pub(crate) set: OpMetrics,
    pub(crate) delete: OpMetrics,
    pub(crate) exists: OpMetrics,
    pub(crate) ttl: OpMetrics,
    pub(crate) get_many: OpMetrics,
    pub(crate) set_many: OpMetrics,
    pub(crate) delete_prefix: OpMetrics,
    pub(crate) tags: OpMetrics,
    pub(crate) rate_limit: OpMetrics,
    allowed: Counter,
    denied: Counter,
    fail_open: Counter,
    fail_closed: Counter,
}

impl CacheMetrics {
    /// The handles of `backend` (`memory`, `redis`, `redis-cluster`, `upstash`).
    pub(crate) fn new(backend: &'static str) -> Self {
        describe();
        let decision = |outcome: &'static str| {
            metrics::counter!(
                "infra_rate_limit_decisions_total",
                "backend" => backend,
                "outcome" => outcome
            )
        };
        CacheMetrics {
            hits: metrics::counter!("infra_cache_hits_total", "backend" => backend),
            misses: metrics::counter!("infra_cache_misses_total", "backend" => backend),
            get: OpMetrics::new(backend, "get"),
            set: OpMetrics::new(backend, "set"),
            delete: OpMetrics::new(backend, "delete"),
            exists: OpMetrics::new(backend, "exists"),
            ttl: OpMetrics::new(backend, "ttl"),
            get_many: OpMetrics::new(backend, "get_many"),
            set_many: OpMetrics::new(backend, "set_many"),
            delete_prefix: OpMetrics::new(backend, "delete_prefix"),
            tags: OpMetrics::new(backend, "tags"),
            rate_limit: OpMetrics::new(backend, "rate_limit"),
            allowed: decision("allowed"),
            denied: decision("denied"),
            fail_open: decision("fail_open"),
            fail_closed: decision("fail_closed"),
        }
    }

    /// Counts a read's hit or miss.
    pub(crate) fn read<T>(&self, value: &Result<Option<T>>) {
        match value {
            Ok(Some(_)) => self.hits.increment(1),
            Ok(None) => self.misses.increment(1),
            Err(_) => {}
        }
    }

    /// Counts the hits and misses of a multi-key read.
    pub(crate) fn read_many<T>(&self, values: &Result<Vec<Option<T>>>) {
        if let Ok(values) = values {
            let hits = values.iter().filter(|v| v.is_some()).count() as u64;
            self.hits.increment(hits);
            self.misses.increment(values.len() as u64 - hits);
        }
    }

    /// Counts a rate-limit decision by its outcome: `allowed`, `denied`, or — when the
    /// backend could not be reached and the failure policy decided — `fail_open` or
    /// `fail_closed`.
    pub(crate) fn decided(&self, decision: &Result<RateLimitDecision>) {
        match decision {
            Ok(d) if d.fallback && d.allowed => self.fail_open.increment(1),
            Ok(d) if d.fallback => self.fail_closed.increment(1),
            Ok(d) if d.allowed => self.allowed.increment(1),
            Ok(_) => self.denied.increment(1),
            Err(_) => {}
        }
    }
}

/// The memory cache's size gauges.
pub(crate) struct MemorySizeMetrics {
    bytes: Gauge,
    entries: Gauge,
}

impl MemorySizeMetrics {
    pub(crate) fn new() -> Self {
        MemorySizeMetrics {
            bytes: metrics::gauge!("infra_cache_memory_bytes"),
            entries: metrics::gauge!("infra_cache_memory_entries"),
        }
    }

    pub(crate) fn set(&self, entries: u64, bytes: u64) {
        self.entries.set(entries as f64);
        self.bytes.set(bytes as f64);
    }
}

fn describe() {
    metrics::describe_counter!(
        "infra_cache_hits_total",
        "Cache reads that found a value (a multi-key read counts each key)."
    );
    metrics::describe_counter!(
        "infra_cache_misses_total",
        "Cache reads that found no value (a multi-key read counts each key)."
    );
    metrics::describe_counter!(
        "infra_cache_errors_total",
        "Cache operations that failed, by backend and operation."
    );
    metrics::describe_histogram!(
        "infra_cache_command_duration_seconds",
        metrics::Unit::Seconds,
        "Latency of cache operations on a networked backend (redis, redis-cluster, upstash), by operation."
    );
    metrics::describe_counter!(
        "infra_rate_limit_decisions_total",
        "Rate-limit decisions by outcome: allowed, denied, fail_open, fail_closed (the last two: the backend was unreachable and the failure policy decided)."
    );
    metrics::describe_gauge!(
        "infra_cache_memory_bytes",
        metrics::Unit::Bytes,
        "Weighted size (keys and values) of the in-memory cache."
    );
    metrics::describe_gauge!(
        "infra_cache_memory_entries",
        "Entries of the in-memory cache."
    );
}
