//! The worker tasks of a started runtime: claim, run, settle in batches, heartbeat, cron.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use infra_core::{ClaimedJob, JobId, JobQueue, Settlement};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::Instrument;

use crate::context::JobContext;
use crate::event_id::now_ms;
use crate::runtime::{JobsRuntime, cron_event, cron_triggers, plan_job, slots};

type SettleTx = mpsc::UnboundedSender<(JobId, Settlement)>;

/// Claims jobs while there are free slots and spawns a task per job.
pub(crate) async fn claim_loop(runtime: JobsRuntime, queue: Arc<dyn JobQueue>, settle: SettleTx) {
    let settings = runtime.settings().clone();
    let shutdown = runtime.shutdown_token().clone();
    let slots = slots(&settings);
    let worthwhile = (settings.claim_batch.min(settings.concurrency) / 2).max(1);
    let mut last_claim_full = false;
    loop {
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let mut permits = vec![first];
        while permits.len() < settings.claim_batch {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if last_claim_full && permits.len() < worthwhile {
            // A busy queue: give running jobs a moment to finish so one round trip claims a
            // worthwhile batch instead of a trickle of one-job claims.
            tokio::time::sleep(Duration::from_millis(1)).await;
            while permits.len() < settings.claim_batch {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        let asked = permits.len();
        let claimed = queue
            .claim(runtime.worker_id(), asked, settings.lease)
            .await;
        last_claim_full = matches!(&claimed, Ok(jobs) if jobs.len() == asked);
        match claimed {
            Ok(jobs) if jobs.is_empty() => {
                drop(permits);
                tokio::select! {
                    _ = queue.wait_for_work(settings.poll_interval) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            Ok(jobs) => {
                {
                    let mut in_flight = runtime
                        .in_flight()
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    in_flight.extend(jobs.iter().map(|j| j.id));
                }
                for (job, permit) in jobs.into_iter().zip(permits) {
                    tokio::spawn(run_job(runtime.clone(), job, permit, settle.clone()));
                }
            }
            Err(err) => {
                drop(permits);
                tracing::warn!(error = %err, "claiming jobs failed; retrying after the poll interval");
                tokio::select! {
                    _ = tokio::time::sleep(settings.poll_interval) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
}

/// Runs one claimed job and hands its settlement to the settle loop.
async fn run_job(
    runtime: JobsRuntime,
    job: ClaimedJob,
    _slot: OwnedSemaphorePermit,
    settle: SettleTx,
) {
    let Some(function) = runtime.functions().get(&job.function_id).cloned() else {
        let _ = settle.send((
            job.id,
            Settlement::Dead {
                error: format!(
                    "no function `{}` is registered in this worker",
                    job.function_id
                ),
            },
        ));
        return;
    };
    let shutdown = runtime.shutdown_token().clone();
    let _limits = tokio::select! {
        permits = runtime.limiter().acquire(&function, &job.event) => permits,
        _ = shutdown.cancelled() => {
            let _ = settle.send((job.id, Settlement::Release { run_at_ms: now_ms() }));
            return;
        }
    };
    let ctx = JobContext::new(
        function.id(),
        job.id.to_string(),
        Arc::new(job.event.clone()),
        job.attempt,
        job.max_attempts,
    )
    .with_cancellation(shutdown.child_token())
    .with_state(runtime.app_state());
    let span = tracing::info_span!(
        "job",
        function = function.id(),
        job_id = job.id,
        attempt = job.attempt,
        waited_ms = (now_ms() - job.run_at_ms).max(0),
    );
    let outcome = function
        .run(job.event.clone(), ctx)
        .instrument(span.clone())
        .await;
    let settlement = JobsRuntime::settlement(&function, &job, &outcome);
    let dead = matches!(settlement, Settlement::Dead { .. });
    runtime.count(function.id(), &outcome, dead);
    match &settlement {
        Settlement::Retry { error, run_at_ms } => span.in_scope(|| {
            tracing::warn!(error = %error, retry_in_ms = run_at_ms - now_ms(), "job failed; will retry")
        }),
        Settlement::Dead { error } => span.in_scope(|| {
            tracing::error!(error = %error, "job failed for good; kept as a dead letter")
        }),
        _ => {}
    }
    let _ = settle.send((job.id, settlement));
}

/// Settles finished jobs in batches: whatever finished while the last batch was written goes
/// in the next one (immediate batched completion).
pub(crate) async fn settle_loop(
    runtime: JobsRuntime,
    queue: Arc<dyn JobQueue>,
    mut rx: mpsc::UnboundedReceiver<(JobId, Settlement)>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 2_000 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let ids: Vec<JobId> = batch.iter().map(|(id, _)| *id).collect();
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=5 {
            match queue.settle(runtime.worker_id(), batch.clone()).await {
                Ok(()) => break,
                Err(err) if attempt < 5 => {
                    tracing::warn!(error = %err, jobs = batch.len(), "settling jobs failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => {
                    // The leases run out and the jobs run again: at-least-once, never lost.
                    tracing::error!(error = %err, jobs = batch.len(), "settling jobs failed; they will run again after their lease");
                }
            }
        }
        let mut in_flight = runtime
            .in_flight()
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for id in ids {
            in_flight.remove(&id);
        }
    }
}

/// Extends the leases of running jobs until shutdown leaves none running.
pub(crate) async fn heartbeat_loop(runtime: JobsRuntime, queue: Arc<dyn JobQueue>) {
    let settings = runtime.settings().clone();
    let shutdown = runtime.shutdown_token().clone();
    let mut last_beat = tokio::time::Instant::now();
    loop {
        if shutdown.is_cancelled() {
            // Draining: look often so shutdown returns as soon as the last job settles.
            tokio::time::sleep(Duration::from_millis(10)).await;
        } else {
            tokio::select! {
                _ = tokio::time::sleep_until(last_beat + settings.heartbeat) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        let ids: Vec<JobId> = runtime
            .in_flight()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if ids.is_empty() && shutdown.is_cancelled() {
            return;
        }
        if ids.is_empty() || last_beat.elapsed() < settings.heartbeat {
            continue;
        }
        last_beat = tokio::time::Instant::now();
        if let Err(err) = queue
            .heartbeat(runtime.worker_id(), &ids, settings.lease)
            .await
        {
            tracing::warn!(error = %err, jobs = ids.len(), "extending leases failed");
        }
    }
}

/// Enqueues cron-triggered runs when their time comes. Every worker runs this loop; the
/// fire time in the event id makes the runs of one tick collapse into one job.
pub(crate) async fn cron_loop(runtime: JobsRuntime, queue: Arc<dyn JobQueue>) {
    let shutdown = runtime.shutdown_token().clone();
    let mut next: HashMap<(String, String), i64> = HashMap::new();
    loop {
        let now = now_ms();
        let mut sleep_until = now + 1_000;
        let registry = runtime.functions();
        let mut jobs = Vec::new();
        for function in registry.scheduled() {
            for schedule in cron_triggers(function) {
                let key = (function.id().to_owned(), schedule.expression().to_owned());
                let at = *next
                    .entry(key.clone())
                    .or_insert_with(|| schedule.next_after(now).unwrap_or(i64::MAX));
                if at <= now {
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
