//! The worker tasks of a started runtime: claim jobs, run them, settle them in batches, and
//! keep their leases alive.
//!
//! Workers are handed everything they use in a [`WorkerConfig`] built by the runtime (the
//! queue's hot path, the shared registry, settings, the shutdown token, the run tally) and
//! never reach back into the runtime. Invariants:
//! - a job runs only while this process holds a slot (`WorkerSettings::concurrency`) and
//!   every in-process concurrency limit of its function admits it;
//! - every claimed job is settled exactly once by this worker, or left to its lease when
//!   settling keeps failing (it then runs again: at least once, never lost);
//! - leases of running jobs are extended until they settle, also while shutting down.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infra_core::{ClaimedJob, JobId, JobQueue, Settlement};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::concurrency::ConcurrencyLimiter;
use crate::context::JobContext;
use crate::event_id::now_ms;
use crate::planning::settlement;
use crate::registry::SharedRegistry;
use crate::stats::RunTally;
use crate::worker_settings::WorkerSettings;

/// What a runtime hands its workers.
pub(crate) struct WorkerConfig {
    /// Where jobs are claimed and settled.
    pub(crate) queue: Arc<dyn JobQueue>,
    /// The functions jobs name.
    pub(crate) functions: SharedRegistry,
    /// Slots, batch sizes, lease, poll interval.
    pub(crate) settings: WorkerSettings,
    /// The id leases are held under.
    pub(crate) worker_id: Arc<str>,
    /// Cancelled when the runtime shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Where attempts are counted.
    pub(crate) tally: Arc<RunTally>,
}

/// The state the worker tasks share.
struct Worker {
    config: WorkerConfig,
    limiter: ConcurrencyLimiter,
    /// Claimed and not yet settled: the jobs whose leases the heartbeat extends.
    in_flight: Mutex<HashSet<JobId>>,
}

/// Starts the claim, settle and heartbeat tasks; they end after shutdown, once every
/// claimed job has settled.
pub(crate) fn spawn_workers(config: WorkerConfig) -> Vec<JoinHandle<()>> {
    let worker = Arc::new(Worker {
        config,
        limiter: ConcurrencyLimiter::default(),
        in_flight: Mutex::new(HashSet::new()),
    });
    let (settle_tx, settle_rx) = mpsc::unbounded_channel();
    vec![
        tokio::spawn(settle_loop(worker.clone(), settle_rx)),
        tokio::spawn(heartbeat_loop(worker.clone())),
        tokio::spawn(claim_loop(worker, settle_tx)),
    ]
}

type SettleTx = mpsc::UnboundedSender<(JobId, Settlement)>;

/// Claims jobs while there are free slots and spawns a task per job.
async fn claim_loop(worker: Arc<Worker>, settle: SettleTx) {
    let settings = worker.config.settings.clone();
    let shutdown = worker.config.shutdown.clone();
    let queue = worker.config.queue.clone();
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
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
            .claim(&worker.config.worker_id, asked, settings.lease)
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
                    let mut in_flight = worker.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                    in_flight.extend(jobs.iter().map(|j| j.id));
                }
                for (job, permit) in jobs.into_iter().zip(permits) {
                    tokio::spawn(run_job(worker.clone(), job, permit, settle.clone()));
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
    worker: Arc<Worker>,
    job: ClaimedJob,
    _slot: OwnedSemaphorePermit,
    settle: SettleTx,
) {
    let Some(function) = worker
        .config
        .functions
        .snapshot()
        .get(&job.function_id)
        .cloned()
    else {
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
    let shutdown = worker.config.shutdown.clone();
    let _limits = tokio::select! {
        permits = worker.limiter.acquire(&function, &job.event) => permits,
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
    .with_cancellation(shutdown.child_token());
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
    let settlement = settlement(&function, &job, &outcome);
    let dead = matches!(settlement, Settlement::Dead { .. });
    worker
        .config
        .tally
        .record(function.id(), outcome.is_success(), dead);
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
async fn settle_loop(worker: Arc<Worker>, mut rx: mpsc::UnboundedReceiver<(JobId, Settlement)>) {
    let queue = worker.config.queue.clone();
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
            match queue.settle(&worker.config.worker_id, batch.clone()).await {
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
        let mut in_flight = worker.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            in_flight.remove(&id);
        }
    }
}

/// Extends the leases of running jobs until shutdown leaves none running.
async fn heartbeat_loop(worker: Arc<Worker>) {
    let settings = worker.config.settings.clone();
    let shutdown = worker.config.shutdown.clone();
    let queue = worker.config.queue.clone();
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
        let ids: Vec<JobId> = worker
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if ids.is_empty() && shutdown.is_cancelled() {
            return;
        }
        if ids.is_empty() {
            // Nothing to extend: the next look is a whole interval away. Without this the
            // deadline stays in the past and an idle worker spins a core.
            last_beat = tokio::time::Instant::now();
            continue;
        }
        if last_beat.elapsed() < settings.heartbeat {
            continue;
        }
        last_beat = tokio::time::Instant::now();
        if let Err(err) = queue
            .heartbeat(&worker.config.worker_id, &ids, settings.lease)
            .await
        {
            tracing::warn!(error = %err, jobs = ids.len(), "extending leases failed");
        }
    }
}
