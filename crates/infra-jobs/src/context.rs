//! What a handler gets besides its event: the attempt, cancellation and the state its
//! function was built with.
//!
//! The state is typed: a function built with `.with_state(deps)` gets a
//! `JobContext<Deps>`, and [`JobContext::state`] returns `&Deps` — asking for another type
//! does not compile (as axum's `State<S>`). A function built without state has
//! `JobContext<()>`.

use std::sync::Arc;

use infra_core::Event;
use tokio_util::sync::CancellationToken;

use crate::run_steps::{Driver, RunSteps};
use crate::step::Step;

/// The context of one run.
///
/// The token is cancelled when the run's timeout passes or the runtime shuts down; a
/// long handler should watch [`JobContext::cancelled`] and stop early.
///
/// ```
/// use std::sync::Arc;
/// use infra_core::Event;
/// use infra_jobs::JobContext;
///
/// #[derive(Clone)]
/// struct Deps { greeting: &'static str }
///
/// let ctx = JobContext::new("greet", "run-1", Arc::new(Event::new("a/b", serde_json::json!({}))), 1, 3)
///     .with_state(Deps { greeting: "hello" });
/// assert_eq!(ctx.state().greeting, "hello");
/// assert_eq!((ctx.attempt(), ctx.max_attempts()), (1, 3));
/// ```
#[derive(Clone)]
pub struct JobContext<S = ()> {
    function_id: Arc<str>,
    event: Arc<Event>,
    events: Arc<Vec<Event>>,
    cancel: CancellationToken,
    steps: Arc<RunSteps>,
    state: S,
}

impl<S> std::fmt::Debug for JobContext<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("function_id", &self.function_id)
            .field("run_id", &self.steps.run_id())
            .field("attempt", &self.attempt())
            .field("max_attempts", &self.max_attempts())
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// A context without state for one attempt (numbered from 1) of `function_id` on
    /// `event`. Its steps run as plain code and record nothing: a runtime builds the
    /// contexts whose steps are durable.
    pub fn new(
        function_id: impl Into<Arc<str>>,
        run_id: impl Into<String>,
        event: Arc<Event>,
        attempt: u32,
        max_attempts: u32,
    ) -> Self {
        let steps = RunSteps::new(
            Driver::Ephemeral,
            run_id.into(),
            event.clone(),
            attempt,
            max_attempts,
        );
        JobContext {
            function_id: function_id.into(),
            events: Arc::new(vec![Event::clone(&event)]),
            event,
            cancel: CancellationToken::new(),
            steps: Arc::new(steps),
            state: (),
        }
    }

    /// A context whose steps are `steps` (built by a driver for this execution).
    pub(crate) fn with_steps(function_id: impl Into<Arc<str>>, steps: Arc<RunSteps>) -> Self {
        JobContext {
            function_id: function_id.into(),
            event: Arc::new(steps.event().clone()),
            events: Arc::new(vec![steps.event().clone()]),
            cancel: CancellationToken::new(),
            steps,
            state: (),
        }
    }

    /// The same context for a run of several events (a batch); the first is its event.
    pub(crate) fn with_events(mut self, events: Vec<Event>) -> Self {
        if !events.is_empty() {
            self.events = Arc::new(events);
        }
        self
    }
}

impl<S> JobContext<S> {
    /// Uses `cancel` as the run's cancellation token.
    pub fn with_cancellation(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The same context carrying `state` (what a function built with state hands its
    /// handler).
    pub fn with_state<T>(self, state: T) -> JobContext<T> {
        JobContext {
            function_id: self.function_id,
            event: self.event,
            events: self.events,
            cancel: self.cancel,
            steps: self.steps,
            state,
        }
    }

    /// The function being run.
    pub fn function_id(&self) -> &str {
        &self.function_id
    }

    /// This run's id (the queue's job id, or Inngest's run id).
    pub fn run_id(&self) -> &str {
        self.steps.run_id()
    }

    /// This attempt's number, from 1. Each step has its own attempts: once a step finished,
    /// the count starts again at 1 for what follows.
    pub fn attempt(&self) -> u32 {
        self.steps.attempt()
    }

    /// Attempts allowed in all; the last one is `attempt() == max_attempts()`.
    pub fn max_attempts(&self) -> u32 {
        self.steps.max_attempts()
    }

    /// The run's durable steps: `run`, `sleep`, `wait_for_event`, `invoke`, `send_event`.
    pub fn step(&self) -> Step<'_> {
        Step::new(&self.steps)
    }

    /// The steps of this execution, for the engine.
    pub(crate) fn steps(&self) -> &Arc<RunSteps> {
        &self.steps
    }

    /// The untyped event, with its id and timestamp.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The run's events: those a batch gathered (`batch_events`), else its one event.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The cancellation token.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the run is cancelled (timeout or shutdown).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// The state the function was built with ([`FunctionBuilder::with_state`](crate::FunctionBuilder::with_state)).
    ///
    /// Asking for another type is a compile error, not a `None` at run time:
    ///
    /// ```compile_fail
    /// use infra_jobs::{Function, JobContext, Outcome};
    ///
    /// #[derive(Clone)]
    /// struct Db;
    /// #[derive(Clone)]
    /// struct Mailer;
    ///
    /// let f = Function::builder("f")
    ///     .on_event("a/b")
    ///     .with_state(Db)
    ///     .raw_handler(|_event, ctx: JobContext<Mailer>| async move { Outcome::success() });
    /// ```
    pub fn state(&self) -> &S {
        &self.state
    }
}
