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
//! - leases of running jobs are extended until they settle, also while shutting down;
//! - a run parked by a step (sleep, wait, invoke) is settled by its park, not again;
//! - a run whose cancellation was asked for has its token cancelled at the next heartbeat,
//!   records no further step, and leaves the queue when it ends.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infra_core::{
    ClaimedJob, Event, EventSender, JobId, JobQueue, NewJob, RunMonitor, RunStatus, Settlement,
    StepStore,
};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::concurrency::ConcurrencyLimiter;
use crate::context::JobContext;
use crate::event_id::now_ms;
use crate::flow_control::BATCH_STEP_ID;
use crate::function::Function;
use crate::outcome::Outcome;
use crate::planning::{plan_job, settlement};
use crate::registry::{FunctionRegistry, SharedRegistry};
use crate::run_observation::RunObservation;
use crate::run_steps::{Driver, InvocationPlanner, QueueRun, RunSteps};
use crate::stats::RunTally;
use crate::step::{FINISHED_EVENT_NAME, INVOKED_EVENT_NAME};
use crate::step_journal::StepJournal;
use crate::step_plan::{Execution, Interrupt};
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
    /// Where durable steps are recorded (the same queue's capability).
    pub(crate) steps: Arc<dyn StepStore>,
    /// Where `send_event` steps and invoked functions' results are sent (the runtime).
    pub(crate) sender: Arc<dyn EventSender>,
    /// Where runs are traced and cron fires checked in, if the app set a monitor.
    pub(crate) monitor: Option<Arc<dyn RunMonitor>>,
}

/// The state the worker tasks share.
struct Worker {
    config: WorkerConfig,
    limiter: ConcurrencyLimiter,
    journal: Arc<StepJournal>,
    /// Claimed and not yet settled: the jobs whose leases the heartbeat extends, with their
    /// runs' cancellation tokens.
    in_flight: Mutex<HashMap<JobId, CancellationToken>>,
    /// Runs whose cancellation was asked for: they leave the queue when they end.
    cancelled: Mutex<HashSet<JobId>>,
}

impl Worker {
    fn forget(&self, id: JobId) {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// Plans invoked functions' jobs from the registry.
struct RegistryInvocations(Arc<FunctionRegistry>);

impl InvocationPlanner for RegistryInvocations {
    fn plan(&self, function_id: &str, event: Event) -> Option<NewJob> {
        let function = self.0.get(function_id)?;
        Some(plan_job(function, event, now_ms(), true))
    }
}

/// Starts the claim, settle and heartbeat tasks; they end after shutdown, once every
/// claimed job has settled.
pub(crate) fn spawn_workers(config: WorkerConfig) -> Vec<JoinHandle<()>> {
    let journal = Arc::new(StepJournal::new(
        config.steps.clone(),
        config.worker_id.clone(),
    ));
    let worker = Arc::new(Worker {
        config,
        limiter: ConcurrencyLimiter::default(),
        journal,
        in_flight: Mutex::new(HashMap::new()),
        cancelled: Mutex::new(HashSet::new()),
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
                let tokens: Vec<CancellationToken> =
                    jobs.iter().map(|_| shutdown.child_token()).collect();
                {
                    let mut in_flight = worker.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                    in_flight.extend(jobs.iter().map(|j| j.id).zip(tokens.iter().cloned()));
                }
                for ((job, permit), token) in jobs.into_iter().zip(permits).zip(tokens) {
                    tokio::spawn(run_job(worker.clone(), job, permit, token, settle.clone()));
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

/// Runs one claimed job and hands its settlement to the settle loop (or parks it).
async fn run_job(
    worker: Arc<Worker>,
    job: ClaimedJob,
    _slot: OwnedSemaphorePermit,
    token: CancellationToken,
    settle: SettleTx,
) {
    let registry = worker.config.functions.snapshot();
    let Some(function) = registry.get(&job.function_id).cloned() else {
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
    let run = QueueRun {
        job_id: job.id,
        // Never claimed before (first attempt, not moved since it was enqueued): no step
        // can have been recorded, so the journal is not asked.
        fresh: job.attempt == 1 && job.run_at_ms <= job.enqueued_at_ms,
        claimed_run_at_ms: job.run_at_ms,
        journal: worker.journal.clone(),
        sender: worker.config.sender.clone(),
        invocations: Arc::new(RegistryInvocations(registry.clone())),
        cancel_on: function.options().cancel_on.clone(),
    };
    let steps = Arc::new(RunSteps::new(
        Driver::Queue(run),
        job.id.to_string(),
        Arc::new(job.event.clone()),
        job.attempt,
        job.max_attempts,
    ));
    let mut ctx = JobContext::with_steps(function.id(), steps.clone()).with_cancellation(token);
    if function.options().batch_events.is_some() {
        ctx = ctx.with_events(batch_events(&worker.journal, job.id).await);
    }
    let observation = RunObservation::start(worker.config.monitor.clone(), &function, &job);
    // Made inside the run's span: with Sentry's tracing layer it is a child of the run's
    // transaction, not a second transaction.
    let span = observation.in_scope(|| {
        tracing::info_span!(
            "job",
            function = function.id(),
            job_id = job.id,
            attempt = job.attempt,
            waited_ms = (now_ms() - job.run_at_ms).max(0),
        )
    });
    let metrics = worker.config.tally.metrics(function.id());
    // A run's first start only (not a retry, nor a durable run's later step), and only for a
    // job due when it was sent: a delay asked for is not latency.
    if job.attempt == 1 && job.run_at_ms <= job.enqueued_at_ms {
        metrics.started_after(Duration::from_millis(
            (now_ms() - job.enqueued_at_ms).max(0) as u64,
        ));
    }
    let started = std::time::Instant::now();
    let mut execution = None;
    observation
        .wrap(Box::pin(
            async {
                execution = Some(function.execute(job.event.clone(), ctx).await);
            }
            .instrument(span.clone()),
        ))
        .await;
    metrics.ran(started.elapsed());
    let Some(execution) = execution else {
        // The monitor's span dropped the body unfinished: nothing ran to settle.
        let _ = settle.send((
            job.id,
            Settlement::Release {
                run_at_ms: now_ms(),
            },
        ));
        return;
    };
    let cancelled = worker
        .cancelled
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&job.id);
    let outcome = match execution {
        _ if cancelled => {
            span.in_scope(|| tracing::info!("run cancelled"));
            observation.finish(RunStatus::Cancelled, span);
            let _ = settle.send((job.id, Settlement::Completed));
            return;
        }
        Execution::Finished(outcome) => outcome,
        Execution::Interrupted(Interrupt::StepFailed { error, after }) => {
            Outcome::Retry { error, after }
        }
        Execution::Interrupted(Interrupt::Park(parked)) => {
            match worker.journal.park(parked).await {
                Ok(_) => {
                    observation.finish(RunStatus::Parked, span);
                    worker.forget(job.id)
                }
                Err(err) => {
                    span.in_scope(
                        || tracing::warn!(error = %err, "parking the run failed; it runs again"),
                    );
                    let _ = settle.send((
                        job.id,
                        Settlement::Release {
                            run_at_ms: now_ms() + 1_000,
                        },
                    ));
                }
            }
            return;
        }
        Execution::Interrupted(Interrupt::Abandoned(reason)) => {
            span.in_scope(|| tracing::warn!(%reason, "run abandoned"));
            worker.forget(job.id);
            return;
        }
        Execution::Interrupted(Interrupt::Report(op)) => {
            Outcome::retry(format!("an Inngest operation in a queue's run: {op}"))
        }
    };
    let mut settlement = settlement(&function, &job, steps.attempt(), &outcome);
    let dead = matches!(settlement, Settlement::Dead { .. });
    if job.event.name == INVOKED_EVENT_NAME
        && matches!(settlement, Settlement::Completed | Settlement::Dead { .. })
        && let Err(err) = report_invocation(&worker, &function, &job.event, &outcome).await
    {
        // The caller must learn the result: run again rather than settle without telling it.
        span.in_scope(|| tracing::warn!(error = %err, "reporting an invoked run's result failed"));
        settlement = Settlement::Release {
            run_at_ms: now_ms() + 1_000,
        };
    }
    worker
        .config
        .tally
        .record(function.id(), outcome.is_success(), dead);
    let status = match &settlement {
        Settlement::Completed => RunStatus::Completed,
        Settlement::Retry { .. } => RunStatus::Retrying,
        Settlement::Dead { .. } => RunStatus::Dead,
        _ => RunStatus::Abandoned,
    };
    match &settlement {
        Settlement::Retry { error, run_at_ms } => span.in_scope(|| {
            tracing::warn!(error = %error, retry_in_ms = run_at_ms - now_ms(), "job failed; will retry")
        }),
        Settlement::Dead { error } => span.in_scope(|| {
            tracing::error!(error = %error, "job failed for good; kept as a dead letter")
        }),
        _ => {}
    }
    observation.finish(status, span);
    let _ = settle.send((job.id, settlement));
}

/// The events a batched run gathered (its recorded `inngest/batch` step); none when the
/// record cannot be read (the run then sees its own event).
async fn batch_events(journal: &StepJournal, job: JobId) -> Vec<Event> {
    let Ok(steps) = journal.load(job).await else {
        return Vec::new();
    };
    steps
        .into_iter()
        .find(|s| s.step_id == BATCH_STEP_ID)
        .and_then(|s| match s.state {
            infra_core::StepState::Done(output) => {
                serde_json::from_value(output["data"].clone()).ok()
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// Sends the `inngest/function.finished` event that resumes the run which invoked this one.
async fn report_invocation(
    worker: &Worker,
    function: &Function,
    event: &Event,
    outcome: &Outcome,
) -> infra_core::Result<()> {
    let correlation = event.data["_inngest"]["correlation_id"].clone();
    if correlation.is_null() {
        return Ok(());
    }
    let mut data = json!({"correlation_id": correlation, "function_id": function.id()});
    match outcome {
        Outcome::Success(result) => data["result"] = result.clone(),
        Outcome::Retry { error, .. } | Outcome::Fail { error } => {
            data["error"] = json!({"name": "Error", "message": error});
        }
    }
    let id = format!("finished-{}", correlation.as_str().unwrap_or_default());
    worker
        .config
        .sender
        .send(Event::new(FINISHED_EVENT_NAME, data).with_id(id))
        .await
        .map(|_| ())
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
        for id in ids {
            worker.forget(id);
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
            .keys()
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
        cancel_requested(&worker, &ids).await;
    }
}

/// Cancels the tokens of the runs among `ids` whose cancellation was asked for.
async fn cancel_requested(worker: &Worker, ids: &[JobId]) {
    let asked = match worker
        .config
        .steps
        .cancel_requested(&worker.config.worker_id, ids)
        .await
    {
        Ok(asked) => asked,
        Err(err) => {
            tracing::warn!(error = %err, "reading cancellation requests failed");
            return;
        }
    };
    for id in asked {
        worker
            .cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        if let Some(token) = worker
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            token.cancel();
        }
    }
}
