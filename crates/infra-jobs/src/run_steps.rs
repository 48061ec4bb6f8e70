//! The steps of one execution: the memoized results, the ids found so far, the driver that
//! records or reports new steps, and the interrupt that ends the execution early.
//!
//! Inngest's execution model: a function runs from the top on every execution; each step it
//! reaches is looked up by its hashed id ([`StepIds`]) and, when memoized, returns its
//! result without running; the first new step runs (and is recorded), or stops the execution
//! with a plan ([`Interrupt`]). Three drivers:
//! - `Ephemeral`: a context built by hand (tests, [`Function::run`](crate::Function::run)
//!   outside a runtime): steps run as plain code and nothing is recorded;
//! - `Queue`: a worker of our own queues: results are recorded through the [`StepJournal`]
//!   (the run continues in the same execution), sleeps and waits park the run;
//! - `Inngest`: a call request from Inngest: memoized results come in the request and the
//!   first new step is reported in the `206` reply.
//!
//! Invariants: an execution reports at most one interrupt (the first); after it the step
//! that raised it never returns to the function, whose future the engine drops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infra_core::{Event, EventSender, FinishedStep, JobId, ParkedRun, StepState};
use serde_json::{Value, json};
use tokio::sync::{Notify, OnceCell};

use crate::step_id::{StepIds, StepKey};
use crate::step_journal::StepJournal;
use crate::step_plan::Interrupt;
use crate::wait_match::CancelOn;

/// A run of our own queues, as its worker executes it.
pub(crate) struct QueueRun {
    /// The queue's job.
    pub(crate) job_id: JobId,
    /// Never claimed before, so it has no recorded steps and the journal is not asked.
    pub(crate) fresh: bool,
    /// The job's due time when claimed: a planned sleep or wait ending by then is over.
    pub(crate) claimed_run_at_ms: i64,
    /// Where steps are recorded.
    pub(crate) journal: Arc<StepJournal>,
    /// Sends `send_event`'s events and plans invocations.
    pub(crate) sender: Arc<dyn EventSender>,
    /// The jobs an invocation starts, by function id.
    pub(crate) invocations: Arc<dyn InvocationPlanner>,
    /// The function's `cancel_on` waits, added to every park.
    pub(crate) cancel_on: Vec<CancelOn>,
}

/// Plans the job an `invoke` step starts.
pub(crate) trait InvocationPlanner: Send + Sync {
    /// The job running `function_id` on `event`; `None` when no such function is registered.
    fn plan(&self, function_id: &str, event: Event) -> Option<infra_core::NewJob>;
}

/// A call request of Inngest's.
pub(crate) struct InngestRun {
    /// The hashed id of the step the request asks to run (`stepId`), `None` for `step`.
    pub(crate) target: Option<String>,
    /// Whether a new step may run in this request rather than be planned.
    pub(crate) immediate: bool,
    /// The app id, for invoked functions' composite ids.
    pub(crate) app_id: String,
    /// Where `send_event` sends (the Inngest client), if configured.
    pub(crate) sender: Option<Arc<dyn EventSender>>,
}

/// How new steps are handled.
pub(crate) enum Driver {
    Ephemeral,
    Queue(QueueRun),
    // Built only by the serve endpoint (feature `serve`); matched everywhere.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    Inngest(InngestRun),
}

/// The steps of one execution; shared by the function's [`JobContext`](crate::JobContext)
/// and the engine.
pub(crate) struct RunSteps {
    driver: Driver,
    memo: OnceCell<HashMap<String, StepState>>,
    ids: Mutex<StepIds>,
    interrupt: Mutex<Option<Interrupt>>,
    interrupted: Notify,
    attempt: AtomicU32,
    max_attempts: u32,
    run_id: String,
    event: Arc<Event>,
}

impl RunSteps {
    /// Steps for an execution of attempt `attempt` (from 1) of `max_attempts`.
    pub(crate) fn new(
        driver: Driver,
        run_id: String,
        event: Arc<Event>,
        attempt: u32,
        max_attempts: u32,
    ) -> Self {
        RunSteps {
            driver,
            memo: OnceCell::new(),
            ids: Mutex::new(StepIds::default()),
            interrupt: Mutex::new(None),
            interrupted: Notify::new(),
            attempt: AtomicU32::new(attempt),
            max_attempts,
            run_id,
            event,
        }
    }

    /// Steps known from the start (an Inngest call request's `steps`, by hashed id).
    #[cfg(feature = "serve")]
    pub(crate) fn with_memo(self, memo: HashMap<String, StepState>) -> Self {
        let _ = self.memo.set(memo);
        self
    }

    pub(crate) fn driver(&self) -> &Driver {
        &self.driver
    }

    /// This attempt's number: 1 again once a step finished in this execution (each step has
    /// its own attempts).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt.load(Ordering::Relaxed)
    }

    pub(crate) fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    pub(crate) fn event(&self) -> &Event {
        &self.event
    }

    /// The key of the next step named `id`.
    pub(crate) fn next_key(&self, id: &str) -> StepKey {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).next(id)
    }

    /// The memoized state of `key`, loading the run's steps on first use.
    pub(crate) async fn memo(&self, key: &StepKey) -> Option<StepState> {
        let loaded = self
            .memo
            .get_or_try_init(|| async {
                match &self.driver {
                    Driver::Queue(run) if !run.fresh => {
                        let rows = run.journal.load(run.job_id).await?;
                        Ok::<_, infra_core::Error>(
                            rows.into_iter().map(|s| (s.step_id, s.state)).collect(),
                        )
                    }
                    _ => Ok(HashMap::new()),
                }
            })
            .await;
        match loaded {
            Ok(memo) => memo.get(&key.hashed).cloned(),
            Err(err) => {
                self.stop(Interrupt::StepFailed {
                    error: format!("loading the run's recorded steps failed: {err}"),
                    after: Some(Duration::from_secs(1)),
                })
                .await
            }
        }
    }

    /// Records the finished step `key` (queue driver); the run continues. A run no longer
    /// held stops here; a failed write retries the run (the step runs again).
    pub(crate) async fn record(&self, key: &StepKey, output: Value) {
        let Driver::Queue(run) = &self.driver else {
            return;
        };
        let step = FinishedStep {
            job_id: run.job_id,
            step_id: key.hashed.clone(),
            output,
        };
        match run.journal.save(step).await {
            Ok(true) => self.attempt.store(1, Ordering::Relaxed),
            Ok(false) => {
                self.stop(Interrupt::Abandoned(format!(
                    "step `{}` finished after the run's lease was lost",
                    key.id
                )))
                .await
            }
            Err(err) => {
                self.stop(Interrupt::StepFailed {
                    error: format!("recording step `{}` failed: {err}", key.id),
                    after: Some(Duration::from_secs(1)),
                })
                .await
            }
        }
    }

    /// Parks the run (queue driver) with the function's `cancel_on` waits.
    pub(crate) async fn park<T>(&self, run: &QueueRun, parked: ParkedRun) -> T {
        let cancel_on = run
            .cancel_on
            .iter()
            .filter_map(|c| c.wait_for(&self.event))
            .collect();
        self.stop(Interrupt::Park(parked.with_cancel_on(cancel_on)))
            .await
    }

    /// Whether an Inngest call request may go on with new step `key` now; otherwise reports
    /// what it must (a planned run step, or that its target is not this step) and stops.
    /// Only run steps are planned, with their `(name, opts)` in `plan`: sleeps, waits and
    /// invocations (`None`) are reported as they are.
    pub(crate) async fn inngest_may_run(
        &self,
        run: &InngestRun,
        key: &StepKey,
        plan: Option<(&str, Value)>,
    ) {
        match &run.target {
            Some(target) if *target == key.hashed => {}
            Some(target) => {
                self.stop::<()>(Interrupt::Report(
                    json!({"id": target, "op": "StepNotFound"}),
                ))
                .await
            }
            None if run.immediate => {}
            None => match plan {
                None => {}
                Some((name, opts)) => {
                    let mut planned = report(key, "StepPlanned", name.into(), opts);
                    planned["data"] = Value::Null;
                    self.stop::<()>(Interrupt::Report(planned)).await
                }
            },
        }
    }

    /// Ends the execution with `interrupt` (the first one wins); never returns.
    pub(crate) async fn stop<T>(&self, interrupt: Interrupt) -> T {
        {
            let mut slot = self.interrupt.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(interrupt);
            }
        }
        self.interrupted.notify_one();
        std::future::pending().await
    }

    /// Resolves once a step stopped the execution.
    pub(crate) async fn interrupted(&self) -> Interrupt {
        loop {
            if let Some(i) = self
                .interrupt
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                return i;
            }
            self.interrupted.notified().await;
        }
    }
}

/// One operation of a `206` reply, in the shape Inngest's JavaScript SDK (v4) writes.
pub(crate) fn report(key: &StepKey, op: &str, name: Value, opts: Value) -> Value {
    let mut userland = json!({"id": key.id});
    if key.index > 0 {
        userland["index"] = json!(key.index);
    }
    let mut out = json!({
        "id": key.hashed,
        "op": op,
        "opts": opts,
        "displayName": key.id,
        "userland": userland,
    });
    if !name.is_null() {
        out["name"] = name;
    }
    out
}
