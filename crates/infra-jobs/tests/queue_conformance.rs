//! `testkit::jobs` on both queues.

mod support;

use std::sync::Arc;

use infra_jobs::{MemoryQueue, PgQueue};

#[tokio::test]
async fn memory_queue_passes_the_suite() {
    infra_core::testkit::jobs::run_all(Arc::new(MemoryQueue::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_queue_passes_the_suite() {
    let db = support::TestDb::create("suite").await;
    infra_core::testkit::jobs::run_all(Arc::new(PgQueue::new(db.database()))).await;
}
