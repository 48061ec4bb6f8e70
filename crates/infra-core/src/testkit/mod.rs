//! Conformance suites: every backend of a trait must pass them.
//!
//! Each suite is a set of plain async functions taking a backend, plus a `run_all` that calls
//! them in turn. A backend's own `tests/` directory calls `run_all` against a real server, the
//! way opendal runs one behaviour suite against every service:
//!
//! ```no_run
//! # async fn demo(cache: std::sync::Arc<dyn infra_core::Cache>) {
//! infra_core::testkit::cache::run_all(cache).await;
//! # }
//! ```
//!
//! Keys are made unique per call ([`unique_key`]) so suites may run in parallel against one
//! shared server, and every case deletes what it wrote.
//!
//! [`bench_report`] is the one row format every crate's benchmark writes its results in, which
//! `cargo xtask bench` gathers into one table. [`redis_cluster`] starts a local Redis Cluster
//! of the caller's own for the suites, benchmarks and fault scenarios that need one.

pub mod bench_report;
pub mod cache;
pub mod jobs;
pub mod rate_limit;
pub mod realtime;
pub mod redis_cluster;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A key no other test in this or another process is using: `testkit:{case}:{nonce}`.
pub fn unique_key(case: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("testkit:{case}:{}:{nanos:x}:{n}", std::process::id())
}
