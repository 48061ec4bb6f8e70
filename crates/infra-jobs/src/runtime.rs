//! `JobsRuntime`: registered functions, the queue they run from, and the workers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use infra_core::{
    ClaimedJob, DeadLetter, Error, ErrorKind, Event, EventLimits, EventSender, FunctionQueueStats,
    HealthCheck, JobId, JobQueue, NewJob, Result, Settlement,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::concurrency::ConcurrencyLimiter;
use crate::concurrency_scope::concurrency_slots;
use crate::context::{AppState, JobContext};
use crate::event_id::{new_event_id, now_ms};
use crate::function::{CRON_EVENT_NAME, Function, Trigger};
use crate::health_probe::probe_function;
pub use crate::health_probe::{PROBE_EVENT_NAME, PROBE_FUNCTION_ID};
use crate::outcome::Outcome;
use crate::registry::FunctionRegistry;
use crate::stats::{FunctionStats, JobsStats, RunCounters};
use crate::worker_settings::WorkerSettings;

/// Where sent events go.
#[derive(Clone)]
pub(crate) enum Delivery {
    /// Into a queue this runtime's workers (and others sharing it) run.
    Queue(Arc<dyn JobQueue>),
    /// To another system that runs the functions (Inngest, which calls back through the
    /// serve handler and [`JobsRuntime::invoke`]).
    Forward {
        sender: Arc<dyn EventSender>,
        health: Arc<dyn HealthCheck>,
        backend: &'static str,
    },
}

pub(crate) struct Inner {
    pub(crate) registry: RwLock<Arc<FunctionRegistry>>,
    pub(crate) delivery: Delivery,
    pub(crate) limits: EventLimits,
    pub(crate) state: std::sync::OnceLock<AppState>,
    pub(crate) settings: WorkerSettings,
    pub(crate) worker_id: String,
    pub(crate) counters: Mutex<HashMap<String, RunCounters>>,
    pub(crate) limiter: ConcurrencyLimiter,
    pub(crate) shutdown: CancellationToken,
    pub(crate) started: Mutex<Option<Vec<tokio::task::JoinHandle<()>>>>,
    pub(crate) probes: Mutex<HashMap<String, oneshot::Sender<()>>>,
    pub(crate) in_flight: Mutex<HashSet<JobId>>,
}

/// Runs the app's functions: send events into it ([`EventSender`]), register functions,
/// [`start`](JobsRuntime::start) workers. Cheap to clone.
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
    pub(crate) inner: Arc<Inner>,
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
    pub fn new(queue: Arc<dyn JobQueue>) -> Self {
        JobsRuntime::build(
            Delivery::Queue(queue),
            EventLimits::default(),
            WorkerSettings::default(),
        )
    }

    /// A runtime over `queue` with `limits` and `settings`.
    pub fn with_settings(
        queue: Arc<dyn JobQueue>,
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
                registry: RwLock::new(Arc::new(FunctionRegistry::new())),
                delivery,
                limits,
                state: std::sync::OnceLock::new(),
                worker_id: format!(
                    "{}-{}-{:08x}",
                    hostname(),
                    std::process::id(),
                    rand::random::<u32>()
                ),
                settings,
                counters: Mutex::new(HashMap::new()),
                limiter: ConcurrencyLimiter::default(),
                shutdown: CancellationToken::new(),
                started: Mutex::new(None),
                probes: Mutex::new(HashMap::new()),
                in_flight: Mutex::new(HashSet::new()),
            }),
        };
        runtime
            .register(probe_function(Arc::downgrade(&runtime.inner)))
            .expect("the probe function is valid and registered first");
        runtime
    }

    /// Hands `state` to every handler ([`JobContext::state`]); it can be set once.
    pub fn with_state<T: std::any::Any + Send + Sync>(self, state: T) -> Result<Self> {
        self.inner
            .state
            .set(Arc::new(state))
            .map_err(|_| Error::new(ErrorKind::Conflict, "the app state is already set"))?;
        Ok(self)
    }

    /// Registers a function; it runs for events sent from now on.
    pub fn register(&self, function: Function) -> Result<()> {
        let mut guard = self
            .inner
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut next = FunctionRegistry::clone(&guard);
        next.register(function)?;
        *guard = Arc::new(next);
        Ok(())
    }

    /// The registered functions (a snapshot), including the built-in probe.
    pub fn functions(&self) -> Arc<FunctionRegistry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

    /// The queue, when the runtime runs functions itself.
    pub fn queue(&self) -> Option<Arc<dyn JobQueue>> {
        match &self.inner.delivery {
            Delivery::Queue(q) => Some(q.clone()),
            Delivery::Forward { .. } => None,
        }
    }

    /// Runs one attempt of `function_id` on `event` here and now (what Inngest's invoke
    /// request asks for): the handler under its timeout, with the app state.
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
        .with_cancellation(self.inner.shutdown.child_token())
        .with_state(self.app_state());
        let span = tracing::info_span!("job", function = function_id, run_id, attempt);
        let outcome = function.run(event, ctx).instrument(span).await;
        self.count(function_id, &outcome, false);
        Ok(outcome)
    }

    /// The jobs `events` become: one per triggered function.
    /// `caller_ids[i]` says whether event `i` came with its own id (which then deduplicates).
    fn plan(&self, events: &[Event], caller_ids: &[bool], now: i64) -> Vec<NewJob> {
        let registry = self.functions();
        let mut jobs = Vec::new();
        for (event, &dedup) in events.iter().zip(caller_ids) {
            for function in registry.triggered_by(&event.name) {
                jobs.push(plan_job(function, event.clone(), now, dedup));
            }
        }
        jobs
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
        let id = event.id.get_or_insert_with(new_event_id).clone();
        event.ts.get_or_insert(now);
        let jobs = self.plan(std::slice::from_ref(&event), &[caller_id], now);
        if !jobs.is_empty() {
            crate::PgQueue::enqueue_on(conn, jobs).await?;
        }
        Ok(id)
    }

    /// Queue state and counters per registered function.
    pub async fn stats(&self) -> Result<JobsStats> {
        let queue_stats = match &self.inner.delivery {
            Delivery::Queue(q) => q.stats().await?,
            Delivery::Forward { .. } => Vec::new(),
        };
        let counters = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut functions: Vec<FunctionStats> = Vec::new();
        let registry = self.functions();
        let mut ids: Vec<String> = registry.iter().map(|f| f.id().to_owned()).collect();
        for q in &queue_stats {
            if !ids.contains(&q.function_id) {
                ids.push(q.function_id.clone());
            }
        }
        ids.sort();
        for id in ids {
            let queue = queue_stats
                .iter()
                .find(|q| q.function_id == id)
                .cloned()
                .unwrap_or_else(|| FunctionQueueStats::new(id.clone()));
            let runs = counters.get(&id).copied().unwrap_or_default();
            functions.push(FunctionStats { queue, runs });
        }
        Ok(JobsStats {
            backend: self.backend(),
            functions,
        })
    }

    /// Dead letters, newest first, of one function or all.
    pub async fn dead_letters(
        &self,
        function_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.require_queue()?.dead_letters(function_id, limit).await
    }

    /// Runs a dead letter again from its first attempt.
    pub async fn replay(&self, id: JobId) -> Result<()> {
        self.require_queue()?.replay(id).await
    }

    fn require_queue(&self) -> Result<Arc<dyn JobQueue>> {
        self.queue().ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                "Inngest keeps the runs: use its dashboard for failed runs and replay",
            )
            .with_context("backend", self.backend())
        })
    }

    /// Prepares the queue (PostgreSQL: applies the queue's migrations) and starts the
    /// workers and the cron scheduler. Calling it again does nothing.
    pub async fn start(&self) -> Result<()> {
        let Delivery::Queue(queue) = &self.inner.delivery else {
            return Ok(());
        };
        if self
            .inner
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Ok(());
        }
        queue.prepare().await?;
        let mut tasks = Vec::new();
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(crate::worker::settle_loop(
            self.clone(),
            queue.clone(),
            settle_rx,
        )));
        tasks.push(tokio::spawn(crate::worker::heartbeat_loop(
            self.clone(),
            queue.clone(),
        )));
        tasks.push(tokio::spawn(crate::worker::claim_loop(
            self.clone(),
            queue.clone(),
            settle_tx,
        )));
        tasks.push(tokio::spawn(crate::worker::cron_loop(
            self.clone(),
            queue.clone(),
        )));
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

    pub(crate) fn settings(&self) -> &WorkerSettings {
        &self.inner.settings
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn limiter(&self) -> &ConcurrencyLimiter {
        &self.inner.limiter
    }

    pub(crate) fn in_flight(&self) -> &Mutex<HashSet<JobId>> {
        &self.inner.in_flight
    }

    pub(crate) fn app_state(&self) -> Option<AppState> {
        self.inner.state.get().cloned()
    }

    pub(crate) fn count(&self, function_id: &str, outcome: &Outcome, dead: bool) {
        let mut counters = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let c = counters.entry(function_id.to_owned()).or_default();
        c.attempts += 1;
        if outcome.is_success() {
            c.successes += 1;
        } else {
            c.failures += 1;
        }
        if dead {
            c.dead_lettered += 1;
        }
    }

    /// The settlement of a claimed job's outcome.
    pub(crate) fn settlement(
        function: &Function,
        job: &ClaimedJob,
        outcome: &Outcome,
    ) -> Settlement {
        match outcome {
            Outcome::Success(_) => Settlement::Completed,
            Outcome::Retry { error, after } => {
                if job.attempt >= job.max_attempts {
                    Settlement::Dead {
                        error: error.clone(),
                    }
                } else {
                    let delay =
                        after.unwrap_or_else(|| function.options().backoff.delay(job.attempt));
                    Settlement::Retry {
                        run_at_ms: now_ms() + delay.as_millis() as i64,
                        error: error.clone(),
                    }
                }
            }
            Outcome::Fail { error } => Settlement::Dead {
                error: error.clone(),
            },
        }
    }
}

/// The job `function` runs for `event`; `dedup_by_id` when the sender chose the event id
/// (a generated id is unique anyway, so it costs no idempotency record).
pub(crate) fn plan_job(function: &Function, event: Event, now: i64, dedup_by_id: bool) -> NewJob {
    let options = function.options();
    let ts = event.ts.unwrap_or(now);
    let mut run_at = ts.max(now);
    let mut job = NewJob::new(function.id(), event, run_at)
        .with_priority(options.priority)
        .with_max_attempts(options.max_attempts());
    if let Some(idem) = &options.idempotency {
        if let Some(key) = idem.key.evaluate(&job.event) {
            job = job.with_idempotency(key, idem.window);
        }
    } else if let Some(id) = job.event.id.clone().filter(|_| dedup_by_id) {
        // Inngest's rule: an event id deduplicates for 24 hours.
        job = job.with_idempotency(format!("event:{id}"), Duration::from_secs(24 * 3600));
    }
    if let Some(debounce) = &options.debounce {
        let key = match &debounce.key {
            Some(k) => k.evaluate(&job.event).unwrap_or_default(),
            None => String::new(),
        };
        run_at = run_at.max(now + debounce.period.as_millis() as i64);
        job.run_at_ms = run_at;
        job = job.with_debounce_key(key);
    }
    if let Some(c) = options.concurrency.iter().find_map(|c| c.key.as_ref())
        && let Some(key) = c.evaluate(&job.event)
    {
        job = job.with_concurrency_key(key);
    }
    for slot in concurrency_slots(function, &job.event) {
        job = job.with_concurrency_slot(slot);
    }
    job
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
        if let Delivery::Forward { sender, .. } = &self.inner.delivery {
            return sender.send_many(events).await;
        }
        let now = now_ms();
        let caller_ids: Vec<bool> = events.iter().map(|e| e.id.is_some()).collect();
        for event in &mut events {
            event.id.get_or_insert_with(new_event_id);
            event.ts.get_or_insert(now);
        }
        let ids = events
            .iter()
            .map(|e| e.id.clone().unwrap_or_default())
            .collect();
        let jobs = self.plan(&events, &caller_ids, now);
        if !jobs.is_empty() {
            self.require_queue()?.enqueue(jobs).await?;
        }
        Ok(ids)
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

/// Ties cron triggers to the event they deliver.
pub(crate) fn cron_event(function: &Function, expression: &str, fire_ms: i64) -> Event {
    Event::new(
        CRON_EVENT_NAME,
        serde_json::json!({ "cron": expression, "function": function.id() }),
    )
    .with_id(format!("cron:{}:{fire_ms}", function.id()))
    .with_ts(fire_ms)
}

/// The cron triggers of `function`.
pub(crate) fn cron_triggers(function: &Function) -> Vec<crate::cron::CronSchedule> {
    function
        .triggers()
        .iter()
        .filter_map(|t| match t {
            Trigger::Cron(c) => Some(c.clone()),
            Trigger::Event(_) => None,
        })
        .collect()
}

/// Limits in-process dispatch: the number of jobs a worker runs at once.
pub(crate) fn slots(settings: &WorkerSettings) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(settings.concurrency.max(1)))
}
