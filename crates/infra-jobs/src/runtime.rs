//! `JobsRuntime`: the app's functions, where their events go, and the workers that run them.
//!
//! The runtime owns its parts and hands each one only what it uses: workers get a
//! [`WorkerConfig`] (the queue's hot path, the shared registry, settings), the cron scheduler
//! the queue and the registry, operators' tools the queue's [`QueueAdmin`]. Invariants:
//! - every send is validated against the [`EventLimits`] as a whole before anything is
//!   enqueued, and a batch's jobs are enqueued in one all-or-nothing call;
//! - `start` prepares the queue and starts the tasks once; `shutdown` stops claiming, cancels
//!   running handlers' tokens and waits for settlements up to the grace period;
//! - with a forwarding backend (Inngest) there is no queue here: sends are forwarded and
//!   Inngest runs the functions through [`JobsRuntime::invoke`].

use std::sync::{Arc, Mutex, RwLock, Weak};

use async_trait::async_trait;
use futures::FutureExt;
use infra_core::{
    Error, ErrorKind, Event, EventLimits, EventSender, FunctionQueueStats, HealthCheck, JobBackend,
    Probe, QueueAdmin, Result, RunMonitor,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::JobContext;
use crate::cron_scheduler::spawn_cron_scheduler;
use crate::event_id::{new_event_id, now_ms};
use crate::function::Function;
use crate::health_probe::{ProbeWaiters, Resend, probe_function, run_probe};
use crate::outcome::Outcome;
use crate::planning::plan_jobs;
use crate::registry::{FunctionRegistry, SharedRegistry};
#[cfg(feature = "serve")]
use crate::run_steps::{Driver, InngestRun, RunSteps};
use crate::stats::{FunctionStats, JobsStats, RunTally, Totals};
#[cfg(feature = "serve")]
use crate::step_plan::Execution;
use crate::wait_match::ExpressionCondition;
use crate::worker::{WorkerConfig, spawn_workers};
use crate::worker_settings::WorkerSettings;

/// Where sent events go.
enum Delivery {
    /// Into a queue this runtime's workers (and others sharing it) run.
    Queue(Arc<dyn JobBackend>),
    /// To another system that runs the functions (Inngest, which calls back through the
    /// serve handler and [`JobsRuntime::invoke`]).
    Forward {
        sender: Arc<dyn EventSender>,
        health: Arc<dyn HealthCheck>,
        backend: &'static str,
    },
}

struct Inner {
    functions: SharedRegistry,
    delivery: Delivery,
    limits: EventLimits,
    settings: WorkerSettings,
    worker_id: Arc<str>,
    tally: Arc<RunTally>,
    shutdown: CancellationToken,
    /// The tasks `start` spawned; `None` until then.
    started: Mutex<Option<Vec<JoinHandle<()>>>>,
    probes: Arc<ProbeWaiters>,
    /// Where runs are traced, cron fires checked in, and sent events find their trace.
    monitor: RwLock<Option<Arc<dyn RunMonitor>>>,
}

/// The jobs service: runs the app's functions. Send events into it ([`EventSender`]),
/// register functions, [`start`](JobsRuntime::start) workers. Cheap to clone.
/// [`from_env`](JobsRuntime::from_env) builds it on the backend the environment selects;
/// [`new`](JobsRuntime::new) over a queue of the caller's, as here:
///
/// ```
/// use infra_core::{Event, EventSender};
/// use infra_jobs::{Function, JobsRuntime, MemoryQueue, Outcome};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let runtime = JobsRuntime::new(std::sync::Arc::new(MemoryQueue::new()));
/// runtime.register(
///     Function::builder("greet")
///         .on_event("user/signed.up")
///         .raw_handler(|event: Event, _ctx| async move { Outcome::success() })
///         .unwrap(),
/// ).unwrap();
/// runtime.start().await.unwrap();
/// runtime.send(Event::new("user/signed.up", serde_json::json!({}))).await.unwrap();
/// runtime.shutdown().await;
/// # });
/// ```
#[derive(Clone)]
pub struct JobsRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JobsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobsRuntime")
            .field("backend", &self.backend())
            .field("worker_id", &self.inner.worker_id)
            .finish_non_exhaustive()
    }
}

impl JobsRuntime {
    /// A runtime over `queue` with default limits and settings.
    pub fn new(queue: Arc<dyn JobBackend>) -> Self {
        JobsRuntime::build(
            Delivery::Queue(queue),
            EventLimits::default(),
            WorkerSettings::default(),
        )
    }

    /// A runtime over `queue` with `limits` and `settings`.
    pub fn with_settings(
        queue: Arc<dyn JobBackend>,
        limits: EventLimits,
        settings: WorkerSettings,
    ) -> Self {
        JobsRuntime::build(Delivery::Queue(queue), limits, settings)
    }

    /// A runtime whose events go to `sender` (Inngest), which runs the functions by calling
    /// [`JobsRuntime::invoke`] through the serve handler; no local workers.
    pub fn forwarding(
        sender: Arc<dyn EventSender>,
        health: Arc<dyn HealthCheck>,
        backend: &'static str,
        limits: EventLimits,
    ) -> Self {
        JobsRuntime::build(
            Delivery::Forward {
                sender,
                health,
                backend,
            },
            limits,
            WorkerSettings::default(),
        )
    }

    fn build(delivery: Delivery, limits: EventLimits, settings: WorkerSettings) -> Self {
        let runtime = JobsRuntime {
            inner: Arc::new(Inner {
                functions: SharedRegistry::default(),
                delivery,
                limits,
                settings,
                worker_id: format!(
                    "{}-{}-{:08x}",
                    hostname(),
                    std::process::id(),
                    rand::random::<u32>()
                )
                .into(),
                tally: Arc::default(),
                shutdown: CancellationToken::new(),
                started: Mutex::new(None),
                probes: Arc::default(),
                monitor: RwLock::new(None),
            }),
        };
        // The probe function sends through this runtime, which owns it: a weak handle, so
        // the runtime can still be dropped.
        let weak = Arc::downgrade(&runtime.inner);
        let resend: Resend = Arc::new(move |event| resend_probe(weak.clone(), event).boxed());
        runtime
            .register(probe_function(
                runtime.inner.worker_id.clone(),
                runtime.inner.probes.clone(),
                resend,
            ))
            .expect("the probe function is valid and registered first");
        runtime
    }

    /// Reports runs and cron fires to `monitor` (the app's `Monitoring`): each attempt is a
    /// span continuing the trace its event carries, each cron fire checks in, and events
    /// sent without a trace get the current one (`monitor.current_trace()`). Set it before
    /// [`start`](JobsRuntime::start): workers started earlier keep running without it.
    pub fn set_monitor(&self, monitor: Arc<dyn RunMonitor>) {
        *self
            .inner
            .monitor
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(monitor);
    }

    fn monitor(&self) -> Option<Arc<dyn RunMonitor>> {
        self.inner
            .monitor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Registers a function; it runs for events sent from now on. A second function with
    /// the same id is a `Conflict` error.
    ///
    /// ```
    /// use infra_core::{ErrorKind, Event};
    /// use infra_jobs::{Function, JobsRuntime, MemoryQueue, Outcome};
    ///
    /// let runtime = JobsRuntime::new(std::sync::Arc::new(MemoryQueue::new()));
    /// let welcome = || {
    ///     Function::builder("send-welcome")
    ///         .on_event("user/signed.up")
    ///         .raw_handler(|_event: Event, _ctx| async move { Outcome::success() })
    ///         .unwrap()
    /// };
    /// runtime.register(welcome()).unwrap();
    /// assert_eq!(runtime.register(welcome()).unwrap_err().kind(), ErrorKind::Conflict);
    /// ```
    pub fn register(&self, function: Function) -> Result<()> {
        self.inner.functions.register(function)
    }

    /// The registered functions (a snapshot), including the built-in probe.
    pub fn functions(&self) -> Arc<FunctionRegistry> {
        self.inner.functions.snapshot()
    }

    /// The event limits every send is checked against.
    pub fn limits(&self) -> &EventLimits {
        &self.inner.limits
    }

    /// `memory`, `postgres` or `inngest`.
    pub fn backend(&self) -> &'static str {
        match &self.inner.delivery {
            Delivery::Queue(q) => q.backend(),
            Delivery::Forward { backend, .. } => backend,
        }
    }

    /// This process's worker id (leases are held under it).
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Where events go, as a trait object (the runtime is an [`EventSender`] itself).
    pub fn events(&self) -> Arc<dyn EventSender> {
        Arc::new(self.clone())
    }

    /// The health check, as a trait object (the runtime is a [`HealthCheck`] itself).
    pub fn health(&self) -> Arc<dyn HealthCheck> {
        Arc::new(self.clone())
    }

    /// The queue's administration — stats, dead letters, replay — when this runtime runs
    /// functions from a queue; `None` when Inngest keeps the runs (use its dashboard).
    pub fn admin(&self) -> Option<Arc<dyn QueueAdmin>> {
        match &self.inner.delivery {
            Delivery::Queue(q) => Some(q.clone()),
            Delivery::Forward { .. } => None,
        }
    }

    /// Prepares the queue's store without starting workers (PostgreSQL: applies the
    /// queue's migrations); [`start`](JobsRuntime::start) does it too. Nothing to prepare
    /// when Inngest runs the functions.
    pub async fn prepare(&self) -> Result<()> {
        match &self.inner.delivery {
            Delivery::Queue(q) => q.prepare().await,
            Delivery::Forward { .. } => Ok(()),
        }
    }

    /// Runs one attempt of `function_id` on `event` here and now (what Inngest's invoke
    /// request asks for): the handler under its timeout, with the state it was built with.
    pub async fn invoke(
        &self,
        function_id: &str,
        event: Event,
        attempt: u32,
        run_id: &str,
    ) -> Result<Outcome> {
        let function = self.functions().get(function_id).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no function with id `{function_id}` is registered"),
            )
            .with_context("function", function_id)
        })?;
        let max_attempts = function.options().max_attempts();
        let ctx = JobContext::new(
            function_id,
            run_id,
            Arc::new(event.clone()),
            attempt.max(1),
            max_attempts,
        )
        .with_cancellation(self.inner.shutdown.child_token());
        let span = tracing::info_span!("job", function = function_id, run_id, attempt);
        let outcome = function.run(event, ctx).instrument(span).await;
        self.inner
            .tally
            .record(function_id, outcome.is_success(), false);
        Ok(outcome)
    }

    /// Runs one execution of `function_id` for a call request of Inngest's (`call`: its
    /// event, batch, attempt, run id and the steps Inngest recorded, by hashed id; `run`:
    /// whether a new step may run now); the execution ends with the function's outcome or the
    /// step operation to report.
    #[cfg(feature = "serve")]
    pub(crate) async fn execute_inngest(
        &self,
        function_id: &str,
        call: InngestExecution,
        run: InngestRun,
    ) -> Result<Execution> {
        let InngestExecution {
            event,
            events,
            attempt,
            run_id,
            memo,
        } = call;
        let function = self.functions().get(function_id).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no function with id `{function_id}` is registered"),
            )
            .with_context("function", function_id)
        })?;
        let steps = RunSteps::new(
            Driver::Inngest(run),
            run_id.clone(),
            Arc::new(event.clone()),
            attempt.max(1),
            function.options().max_attempts(),
        )
        .with_memo(memo);
        let ctx = JobContext::with_steps(function_id, Arc::new(steps))
            .with_cancellation(self.inner.shutdown.child_token())
            .with_events(events);
        let span = tracing::info_span!("job", function = function_id, run_id, attempt);
        let execution = function.execute(event, ctx).instrument(span).await;
        if let Execution::Finished(outcome) = &execution {
            self.inner
                .tally
                .record(function_id, outcome.is_success(), false);
        }
        Ok(execution)
    }

    /// Where events go when another system runs the functions (`send_event` steps served to
    /// Inngest send through it).
    #[cfg(feature = "serve")]
    pub(crate) fn forward_sender(&self) -> Option<Arc<dyn EventSender>> {
        match &self.inner.delivery {
            Delivery::Forward { sender, .. } => Some(sender.clone()),
            Delivery::Queue(_) => None,
        }
    }

    /// Sends `event` inside the caller's own diesel-async transaction on the PostgreSQL
    /// queue's database: the jobs exist if and only if the transaction commits (an outbox),
    /// and workers wake when it does.
    #[cfg(feature = "postgres")]
    pub async fn send_in_transaction(
        &self,
        conn: &mut infra_db::DbConnection,
        mut event: Event,
    ) -> Result<String> {
        if self.backend() != "postgres" {
            return Err(Error::new(
                ErrorKind::Backend,
                format!(
                    "send_in_transaction needs the postgres backend, this runtime uses `{}`",
                    self.backend()
                ),
            ));
        }
        self.inner.limits.validate(&event)?;
        let now = now_ms();
        let caller_id = event.id.is_some();
        if event.trace.is_none() {
            event.trace = self.monitor().and_then(|m| m.current_trace());
        }
        let id = event.id.get_or_insert_with(new_event_id).clone();
        event.ts.get_or_insert(now);
        let jobs = plan_jobs(
            &self.functions(),
            std::slice::from_ref(&event),
            &[caller_id],
            now,
        );
        if !jobs.is_empty() {
            crate::PgQueue::enqueue_on(conn, jobs).await?;
        }
        Ok(id)
    }

    /// Queue state and this process's run counters per registered function.
    pub async fn stats(&self) -> Result<JobsStats> {
        let queue_stats = match self.admin() {
            Some(admin) => admin.stats().await?,
            None => Vec::new(),
        };
        let counters = self.inner.tally.snapshot();
        let registry = self.functions();
        let mut ids: Vec<String> = registry.iter().map(|f| f.id().to_owned()).collect();
        for q in &queue_stats {
            if !ids.contains(&q.function_id) {
                ids.push(q.function_id.clone());
            }
        }
        ids.sort();
        let functions = ids
            .into_iter()
            .map(|id| {
                let queue = queue_stats
                    .iter()
                    .find(|q| q.function_id == id)
                    .cloned()
                    .unwrap_or_else(|| FunctionQueueStats::new(id.clone()));
                let runs = counters.get(&id).copied().unwrap_or_default();
                FunctionStats { queue, runs }
            })
            .collect();
        Ok(JobsStats {
            backend: self.backend(),
            functions,
        })
    }

    /// Reads the queue's stats once and sets `infra_jobs_queue_depth{function,state}` and
    /// `infra_jobs_oldest_ready_age_seconds{function}` from them: what the metrics interval
    /// calls (one query on PostgreSQL; nothing for Inngest, whose queue is not ours).
    pub async fn record_metrics(&self) -> Result<()> {
        if self.admin().is_none() {
            return Ok(());
        }
        crate::job_metrics::record_queue(&self.stats().await?);
        Ok(())
    }

    /// Prepares the queue (PostgreSQL: applies the queue's migrations) and starts the
    /// workers and the cron scheduler. Calling it again does nothing.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use infra_core::{Env, HealthCheck, HealthStatus};
    /// let jobs = infra_jobs::JobsRuntime::from_env(&Env::empty()).unwrap();
    /// // register the app's functions first, then:
    /// jobs.start().await.unwrap();
    /// assert_eq!(jobs.check_ready().await.status, HealthStatus::Healthy); // workers running
    /// jobs.shutdown().await;
    /// # });
    /// ```
    pub async fn start(&self) -> Result<()> {
        let Delivery::Queue(backend) = &self.inner.delivery else {
            return Ok(());
        };
        if self.is_started() {
            return Ok(());
        }
        backend.prepare().await?;
        let queue: Arc<dyn infra_core::JobQueue> = backend.clone();
        let mut tasks = spawn_workers(WorkerConfig {
            queue: queue.clone(),
            functions: self.inner.functions.clone(),
            settings: self.inner.settings.clone(),
            worker_id: self.inner.worker_id.clone(),
            shutdown: self.inner.shutdown.clone(),
            tally: self.inner.tally.clone(),
            steps: backend.clone(),
            sender: Arc::new(WeakSender(Arc::downgrade(&self.inner))),
            monitor: self.monitor(),
        });
        tasks.push(spawn_cron_scheduler(
            queue,
            self.inner.functions.clone(),
            self.inner.shutdown.clone(),
        ));
        let mut started = self.inner.started.lock().unwrap_or_else(|e| e.into_inner());
        if started.is_some() {
            for t in tasks {
                t.abort();
            }
        } else {
            *started = Some(tasks);
        }
        Ok(())
    }

    /// Stops claiming, cancels running handlers' tokens, waits for the workers (their
    /// settlements are flushed) up to the shutdown grace period.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let tasks = self
            .inner
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(tasks) = tasks {
            let grace = self.inner.settings.shutdown_grace;
            let all = futures::future::join_all(tasks);
            let _ = tokio::time::timeout(grace, all).await;
        }
    }

    fn is_started(&self) -> bool {
        self.inner
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

/// The runtime as its workers' sender: weak, so the workers do not keep it alive.
struct WeakSender(Weak<Inner>);

#[async_trait]
impl EventSender for WeakSender {
    async fn send(&self, event: Event) -> Result<String> {
        let mut ids = self.send_many(vec![event]).await?;
        ids.pop()
            .ok_or_else(|| Error::backend("the runtime returned no id for the event"))
    }

    async fn send_many(&self, events: Vec<Event>) -> Result<Vec<String>> {
        match self.0.upgrade() {
            Some(inner) => JobsRuntime { inner }.send_many(events).await,
            None => Err(Error::unavailable("the jobs runtime was dropped")),
        }
    }
}

/// Sends a probe event again through the runtime behind `weak`, if it still exists.
async fn resend_probe(weak: Weak<Inner>, event: Event) -> Result<String> {
    match weak.upgrade() {
        Some(inner) => JobsRuntime { inner }.send(event).await,
        None => Ok(String::new()),
    }
}

#[async_trait]
impl EventSender for JobsRuntime {
    async fn send(&self, event: Event) -> Result<String> {
        let mut ids = self.send_many(vec![event]).await?;
        ids.pop()
            .ok_or_else(|| Error::backend("the runtime returned no id for the event"))
    }

    /// Validates the whole batch against the limits, then enqueues every triggered
    /// function's job in one all-or-nothing call.
    async fn send_many(&self, mut events: Vec<Event>) -> Result<Vec<String>> {
        self.inner.limits.validate_batch(&events)?;
        let queue = match &self.inner.delivery {
            Delivery::Queue(queue) => queue,
            Delivery::Forward { sender, .. } => return sender.send_many(events).await,
        };
        let now = now_ms();
        let caller_ids: Vec<bool> = events.iter().map(|e| e.id.is_some()).collect();
        if events.iter().any(|e| e.trace.is_none())
            && let Some(trace) = self.monitor().and_then(|m| m.current_trace())
        {
            for event in events.iter_mut().filter(|e| e.trace.is_none()) {
                event.trace = Some(trace.clone());
            }
        }
        for event in &mut events {
            event.id.get_or_insert_with(new_event_id);
            event.ts.get_or_insert(now);
        }
        let ids = events
            .iter()
            .map(|e| e.id.clone().unwrap_or_default())
            .collect();
        let jobs = plan_jobs(&self.functions(), &events, &caller_ids, now);
        if !jobs.is_empty() {
            queue.enqueue(jobs).await?;
        }
        // Runs waiting for these events (wait_for_event, invoke, cancel_on) resume.
        queue
            .deliver(&events, Arc::new(ExpressionCondition))
            .await?;
        Ok(ids)
    }
}

#[async_trait]
impl HealthCheck for JobsRuntime {
    fn service(&self) -> &str {
        "jobs"
    }
    fn backend(&self) -> &str {
        JobsRuntime::backend(self)
    }
    /// Memory and PostgreSQL: sends a probe event and waits for the built-in probe function
    /// to run it (so the queue, a worker and the dispatch path all work). Inngest: checks
    /// the key without creating events.
    async fn probe(&self) -> Result<Probe> {
        if let Delivery::Forward { health, .. } = &self.inner.delivery {
            return health.probe().await;
        }
        let totals = async || Ok(Totals::of(&self.stats().await?));
        let running = self.is_started() && !self.inner.shutdown.is_cancelled();
        if !running {
            // No worker here to run a probe job: prove the queue answers instead. On
            // PostgreSQL other processes may be the workers; in memory nothing will run.
            let detail = format!("workers not started in this process; {}", totals().await?);
            return Ok(if self.backend() == "memory" {
                Probe::degraded(detail)
            } else {
                Probe::healthy(detail)
            });
        }
        run_probe(self, &self.inner.worker_id, &self.inner.probes, totals).await
    }
    /// Whether this process's workers run, from local state: no probe job, no queue query
    /// (the database's own readiness covers PostgreSQL), no call to Inngest.
    async fn ping(&self) -> Result<Probe> {
        if let Delivery::Forward { health, .. } = &self.inner.delivery {
            return health.ping().await;
        }
        let running = self.is_started() && !self.inner.shutdown.is_cancelled();
        Ok(match (running, self.backend()) {
            (true, _) => Probe::healthy("workers running"),
            (false, "memory") => Probe::degraded("workers not started in this process"),
            (false, _) => Probe::healthy("workers not started in this process"),
        })
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

/// What one Inngest call request asks to execute.
#[cfg(feature = "serve")]
pub(crate) struct InngestExecution {
    /// The run's event (the first of a batch).
    pub(crate) event: Event,
    /// Every event of a batched run.
    pub(crate) events: Vec<Event>,
    /// The attempt, counted from 1.
    pub(crate) attempt: u32,
    /// Inngest's run id.
    pub(crate) run_id: String,
    /// The steps Inngest recorded, by hashed id.
    pub(crate) memo: std::collections::HashMap<String, infra_core::StepState>,
}
