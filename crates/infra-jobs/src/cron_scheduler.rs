//! The cron scheduler of a started runtime: enqueues a function's cron runs when their time
//! comes.
//!
//! Every worker process runs one. The fire time in a cron run's event id (see
//! [`cron_event`]) makes the runs that several processes plan for one tick collapse into one
//! job. A tick missed while no process ran is not made up; the next one fires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use infra_core::JobQueue;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::event_id::now_ms;
use crate::planning::{cron_event, cron_triggers, plan_job};
use crate::registry::SharedRegistry;

/// Starts the scheduler; it ends on shutdown.
pub(crate) fn spawn_cron_scheduler(
    queue: Arc<dyn JobQueue>,
    functions: SharedRegistry,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(cron_loop(queue, functions, shutdown))
}

async fn cron_loop(
    queue: Arc<dyn JobQueue>,
    functions: SharedRegistry,
    shutdown: CancellationToken,
) {
    let mut next: HashMap<(String, String), i64> = HashMap::new();
    loop {
        let now = now_ms();
        let mut sleep_until = now + 1_000;
        let registry = functions.snapshot();
        let mut jobs = Vec::new();
        for function in registry.scheduled() {
            for schedule in cron_triggers(function) {
                let key = (function.id().to_owned(), schedule.expression().to_owned());
                let at = *next
                    .entry(key.clone())
                    .or_insert_with(|| schedule.next_after(now).unwrap_or(i64::MAX));
                if at <= now {
                    crate::job_metrics::count_cron_fire(function.id());
                    jobs.push(plan_job(
                        function,
                        cron_event(function, schedule.expression(), at),
                        now,
                        true,
                    ));
                    let following = schedule.next_after(at.max(now)).unwrap_or(i64::MAX);
                    next.insert(key, following);
                    sleep_until = sleep_until.min(following);
                } else {
                    sleep_until = sleep_until.min(at);
                }
            }
        }
        if !jobs.is_empty()
            && let Err(err) = queue.enqueue(jobs).await
        {
            tracing::warn!(error = %err, "enqueuing cron runs failed");
        }
        let wait = Duration::from_millis((sleep_until - now_ms()).clamp(1, 1_000) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
