//! An idle runtime costs no CPU: its loops sleep until there is something to do.

use std::sync::Arc;
use std::time::Duration;

use infra_core::testkit::bench_report::process_cpu;
use infra_jobs::{EventLimits, Function, JobsRuntime, MemoryQueue, Outcome, WorkerSettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_runtime_sleeps_between_heartbeats() {
    let settings = WorkerSettings::default().with_lease(Duration::from_millis(300));
    let runtime = JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        EventLimits::default(),
        settings,
    );
    runtime
        .register(
            Function::builder("noop")
                .on_event("noop/requested")
                .raw_handler(|_, _| async { Outcome::success() })
                .unwrap(),
        )
        .unwrap();
    runtime.start().await.unwrap();
    // Past the first heartbeat interval, where a loop whose deadline is never moved forward
    // starts spinning; then measure a window of pure idleness.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wall = Duration::from_secs(2);
    let cpu_before = process_cpu();
    tokio::time::sleep(wall).await;
    let cpu = process_cpu() - cpu_before;
    runtime.shutdown().await;
    // A spinning loop burns a whole core (about `wall`); sleeping loops a few ticks. A quarter
    // of the window leaves room for a loaded machine without letting a spin through.
    assert!(
        cpu < wall / 4,
        "an idle runtime used {cpu:?} of CPU in {wall:?}: a loop is spinning"
    );
}
