//! Functions: an id, triggers, options and a handler.
//!
//! A [`Function`] is complete when built: its handler owns the typed state it needs
//! ([`FunctionBuilder::with_state`]), so a registered function never looks anything up at run
//! time and a missing or mistyped state is a compile error.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use infra_core::{Backoff, Error, Event, Result, SingletonMode, TypedEvent, format_duration};

use crate::context::JobContext;
use crate::cron::CronSchedule;
use crate::event_key::EventKey;
use crate::flow_control::{BatchEvents, KeyExpression, Ordering, RateLimit, Singleton, Throttle};
use crate::function_options::{Concurrency, Debounce, FunctionOptions, Idempotency};
use crate::outcome::Outcome;
use crate::step_plan::Execution;
use crate::wait_match::{CancelOn, Match, check_expression};

/// What starts a function.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Every event with this name.
    Event(String),
    /// A cron schedule (UTC); the function receives an `inngest/scheduled.timer` event.
    Cron(CronSchedule),
}

/// The name of the event a cron trigger delivers, as Inngest names it.
pub const CRON_EVENT_NAME: &str = "inngest/scheduled.timer";

/// A handler with its state bound: takes the raw event and a context without state.
type DynHandler = Arc<dyn Fn(Event, JobContext) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// A registered background function.
#[derive(Clone)]
pub struct Function {
    id: String,
    name: String,
    triggers: Vec<Trigger>,
    options: FunctionOptions,
    handler: DynHandler,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function")
            .field("id", &self.id)
            .field("triggers", &self.triggers)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Function {
    /// A function receiving untyped [`Event`]s (finish with
    /// [`FunctionBuilder::raw_handler`]); add triggers with [`FunctionBuilder::on_event`] /
    /// [`FunctionBuilder::on_cron`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use infra_core::Event;
    /// use infra_jobs::{Function, JobContext, Outcome};
    ///
    /// let nightly = Function::builder("purge-sessions")
    ///     .on_cron("0 3 * * *") // 03:00 UTC, as an `inngest/scheduled.timer` event
    ///     .timeout(Duration::from_secs(600))
    ///     .raw_handler(|_event: Event, ctx: JobContext| async move {
    ///         if ctx.is_cancelled() {
    ///             return Outcome::retry("shutting down");
    ///         }
    ///         Outcome::success()
    ///     })
    ///     .unwrap();
    /// assert_eq!(nightly.id(), "purge-sessions");
    /// ```
    pub fn builder(id: impl Into<String>) -> FunctionBuilder<Event> {
        FunctionBuilder::new(id.into(), Vec::new())
    }

    /// A function triggered by `E`'s events and receiving them as `E` (finish with
    /// [`FunctionBuilder::handler`]).
    ///
    /// ```
    /// use infra_core::TypedEvent;
    /// use infra_jobs::{Function, JobContext, Outcome};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct InvoiceOverdue { invoice_id: String }
    /// impl TypedEvent for InvoiceOverdue { const NAME: &'static str = "billing/invoice.overdue"; }
    ///
    /// #[derive(Clone)]
    /// struct Mailer { from: String }
    ///
    /// let remind = Function::typed::<InvoiceOverdue>("remind-overdue")
    ///     .retries(5)
    ///     .with_state(Mailer { from: "billing@example.com".into() })
    ///     .handler(|event: InvoiceOverdue, ctx: JobContext<Mailer>| async move {
    ///         let _ = (&ctx.state().from, event.invoice_id);
    ///         Outcome::success()
    ///     })
    ///     .unwrap();
    /// assert_eq!(remind.options().max_attempts(), 6);
    /// ```
    pub fn typed<E: TypedEvent>(id: impl Into<String>) -> FunctionBuilder<E> {
        FunctionBuilder::new(id.into(), vec![Trigger::Event(E::NAME.to_owned())])
    }

    /// The id (a slug such as `remind-overdue`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The display name (the id unless set).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What starts it.
    pub fn triggers(&self) -> &[Trigger] {
        &self.triggers
    }

    /// How it runs.
    pub fn options(&self) -> &FunctionOptions {
        &self.options
    }

    /// Whether an event named `name` triggers it.
    pub fn is_triggered_by(&self, name: &str) -> bool {
        self.triggers
            .iter()
            .any(|t| matches!(t, Trigger::Event(n) if n == name))
    }

    /// Runs one attempt: the handler under the timeout, a panic caught as a retryable
    /// failure. On timeout the context's token is cancelled. A step that stops the attempt
    /// (which a context built by [`JobContext::new`] never does) makes it a retryable
    /// failure.
    pub async fn run(&self, event: Event, ctx: JobContext) -> Outcome {
        match self.execute(event, ctx).await {
            Execution::Finished(outcome) => outcome,
            Execution::Interrupted(interrupt) => {
                Outcome::retry(format!("a step stopped the run: {interrupt:?}"))
            }
        }
    }

    /// Runs one execution: the handler under the timeout, raced against its steps' interrupt
    /// (whose arrival drops the handler's future, as Inngest's SDKs abandon theirs).
    pub(crate) async fn execute(&self, event: Event, ctx: JobContext) -> Execution {
        let cancel = ctx.cancellation().clone();
        let steps = ctx.steps().clone();
        let attempt = AssertUnwindSafe((self.handler)(event, ctx)).catch_unwind();
        let timed = tokio::time::timeout(self.options.timeout, attempt);
        let finished = tokio::select! {
            biased;
            interrupt = steps.interrupted() => return Execution::Interrupted(interrupt),
            finished = timed => finished,
        };
        Execution::Finished(match finished {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panic)) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Outcome::retry(format!("handler panicked: {message}"))
            }
            Err(_) => {
                cancel.cancel();
                Outcome::retry(format!(
                    "timed out after {}",
                    format_duration(self.options.timeout)
                ))
            }
        })
    }
}

/// Builds a [`Function`]; `E` is the event type its handler receives, `S` the state it
/// receives in its [`JobContext`] (none until [`FunctionBuilder::with_state`]).
pub struct FunctionBuilder<E, S = ()> {
    id: String,
    name: Option<String>,
    triggers: Vec<Trigger>,
    options: FunctionOptions,
    errors: Vec<Error>,
    state: S,
    _event: PhantomData<fn(E)>,
}

impl<E> FunctionBuilder<E> {
    fn new(id: String, triggers: Vec<Trigger>) -> Self {
        FunctionBuilder {
            id,
            name: None,
            triggers,
            options: FunctionOptions::default(),
            errors: Vec::new(),
            state: (),
            _event: PhantomData,
        }
    }
}

impl<E, S> FunctionBuilder<E, S> {
    /// Hands `state` (a pool, clients, settings) to every run: the handler receives a
    /// `JobContext<T>` whose [`state`](JobContext::state) is a clone of it. Clone is per run,
    /// so share what is large behind an `Arc` (as axum's `State` does).
    pub fn with_state<T: Clone + Send + Sync + 'static>(self, state: T) -> FunctionBuilder<E, T> {
        FunctionBuilder {
            id: self.id,
            name: self.name,
            triggers: self.triggers,
            options: self.options,
            errors: self.errors,
            state,
            _event: PhantomData,
        }
    }

    /// Sets the display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Also runs on a cron schedule (five fields, or six with seconds first; UTC).
    pub fn on_cron(mut self, expression: &str) -> Self {
        match CronSchedule::parse(expression) {
            Ok(schedule) => self.triggers.push(Trigger::Cron(schedule)),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Retries after the first attempt (Inngest's `retries`; default 3).
    pub fn retries(mut self, retries: u32) -> Self {
        self.options.retry = self.options.retry.with_retries(retries);
        self
    }

    /// The back-off between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.options.retry = self.options.retry.with_backoff(backoff);
        self
    }

    /// The deadline of one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// The priority (higher first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.options.priority = priority;
        self
    }

    /// At most `limit` runs at once over all events: across every worker process on a
    /// PostgreSQL queue, inside the one process on the in-memory queue.
    pub fn concurrency(mut self, limit: u32) -> Self {
        self.options
            .concurrency
            .push(Concurrency { limit, key: None });
        self
    }

    /// At most `limit` runs at once per value of the field `key_path`
    /// (such as `event.data.userId`), counted as [`FunctionBuilder::concurrency`] counts.
    pub fn concurrency_per_key(mut self, limit: u32, key_path: &str) -> Self {
        match EventKey::field(key_path) {
            Ok(key) => self.options.concurrency.push(Concurrency {
                limit,
                key: Some(key),
            }),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Events with the same values of `key_paths` inside `window` run once.
    pub fn idempotency<'a>(
        mut self,
        key_paths: impl IntoIterator<Item = &'a str>,
        window: Duration,
    ) -> Self {
        match EventKey::fields(key_paths) {
            Ok(key) => self.options.idempotency = Some(Idempotency { key, window }),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Runs `period` after the last event (per value of `key_path`, if given).
    pub fn debounce(mut self, period: Duration, key_path: Option<&str>) -> Self {
        let key = match key_path.map(EventKey::field).transpose() {
            Ok(key) => key,
            Err(e) => {
                self.errors.push(e);
                return self;
            }
        };
        self.options.debounce = Some(Debounce {
            period,
            key,
            max_wait: None,
        });
        self
    }

    /// With [`FunctionBuilder::debounce`]: the longest a run is pushed back from its key's
    /// first event, however many events keep arriving (Inngest's debounce `timeout`).
    pub fn debounce_max_wait(mut self, max_wait: Duration) -> Self {
        match &mut self.options.debounce {
            Some(debounce) => debounce.max_wait = Some(max_wait),
            None => self.errors.push(Error::invalid_input(
                "debounce_max_wait",
                "needs a debounce set before it",
            )),
        }
        self
    }

    fn key(&mut self, key: Option<&str>, field: &str) -> Option<KeyExpression> {
        match key.map(|k| KeyExpression::parse(k, field)).transpose() {
            Ok(key) => key,
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    /// At most `limit` runs start per `period` (per value of `key`, an expression such as
    /// `event.data.userId`); excess runs wait their turn (Inngest's `throttle`, burst 1).
    pub fn throttle(mut self, limit: u32, period: Duration, key: Option<&str>) -> Self {
        let key = self.key(key, "throttle");
        self.options.throttle = Some(Throttle {
            limit,
            period,
            burst: 1,
            key,
        });
        self
    }

    /// At most `limit` runs per `period` (per value of `key`); excess events start no run
    /// and are counted (Inngest's `rateLimit`).
    pub fn rate_limit(mut self, limit: u32, period: Duration, key: Option<&str>) -> Self {
        let key = self.key(key, "rate_limit");
        self.options.rate_limit = Some(RateLimit { limit, period, key });
        self
    }

    /// Up to `max_size` events (per value of `key`), or those that arrived within `timeout`
    /// of the first, in one run (Inngest's `batchEvents`); the handler reads them from
    /// [`JobContext::events`].
    pub fn batch_events(mut self, max_size: u32, timeout: Duration, key: Option<&str>) -> Self {
        let key = self.key(key, "batch_events");
        self.options.batch_events = Some(BatchEvents {
            max_size,
            timeout,
            key,
        });
        self
    }

    /// One run at a time (per value of `key`): a new run is skipped, or cancels the others
    /// (Inngest's `singleton`).
    pub fn singleton(mut self, mode: SingletonMode, key: Option<&str>) -> Self {
        let key = self.key(key, "singleton");
        self.options.singleton = Some(Singleton { mode, key });
        self
    }

    /// Runs (per value of `key`) start one after another, in send order.
    pub fn ordered(mut self, key: Option<&str>) -> Self {
        let key = self.key(key, "ordered");
        self.options.ordering = Some(Ordering { key });
        self
    }

    /// Cancels the function's sleeping and waiting runs when an event named `event` arrives
    /// that `matching` accepts against the run's event (Inngest's `cancelOn`).
    pub fn cancel_on(mut self, event: impl Into<String>, matching: Match) -> Self {
        if let Some(text) = matching.expression_text()
            && let Err(e) = check_expression(&text, "cancel_on")
        {
            self.errors.push(e);
            return self;
        }
        self.options.cancel_on.push(CancelOn {
            event: event.into(),
            matching,
        });
        self
    }

    fn finish(self, handler: DynHandler) -> Result<Function> {
        if let Some(err) = self.errors.into_iter().next() {
            return Err(err.with_context("function", self.id));
        }
        check_id(&self.id)?;
        if self.triggers.is_empty() {
            return Err(Error::invalid_input(
                "triggers",
                format!("function `{}` needs an event or a cron trigger", self.id),
            ));
        }
        for c in &self.options.concurrency {
            if c.limit == 0 {
                return Err(Error::invalid_input(
                    "concurrency",
                    format!("limit of function `{}` must be at least 1", self.id),
                ));
            }
        }
        let positive = [
            (
                "throttle",
                self.options.throttle.as_ref().map(|t| (t.limit, t.period)),
            ),
            (
                "rate_limit",
                self.options
                    .rate_limit
                    .as_ref()
                    .map(|r| (r.limit, r.period)),
            ),
            (
                "batch_events",
                self.options
                    .batch_events
                    .as_ref()
                    .map(|b| (b.max_size, b.timeout)),
            ),
        ];
        for (field, limits) in positive {
            if let Some((n, period)) = limits
                && (n == 0 || period.is_zero())
            {
                return Err(Error::invalid_input(
                    field,
                    format!(
                        "of function `{}` needs a limit and a period above zero",
                        self.id
                    ),
                ));
            }
        }
        if self.options.timeout.is_zero() {
            return Err(Error::invalid_input(
                "timeout",
                format!("of function `{}` must be above zero", self.id),
            ));
        }
        Ok(Function {
            name: self.name.unwrap_or_else(|| self.id.clone()),
            id: self.id,
            triggers: self.triggers,
            options: self.options,
            handler,
        })
    }
}

impl<S: Clone + Send + Sync + 'static> FunctionBuilder<Event, S> {
    /// Also runs on every event named `name`.
    pub fn on_event(mut self, name: impl Into<String>) -> Self {
        self.triggers.push(Trigger::Event(name.into()));
        self
    }

    /// Finishes with a handler receiving the raw event.
    pub fn raw_handler<F, Fut, O>(self, handler: F) -> Result<Function>
    where
        F: Fn(Event, JobContext<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: Into<Outcome>,
    {
        let state = self.state.clone();
        self.finish(Arc::new(move |event, ctx: JobContext| {
            let run = handler(event, ctx.with_state(state.clone()));
            async move { run.await.into() }.boxed()
        }))
    }
}

impl<E: TypedEvent, S: Clone + Send + Sync + 'static> FunctionBuilder<E, S> {
    /// Finishes with a handler receiving `E`; an event that does not decode as `E` fails
    /// for good (retrying cannot fix it).
    pub fn handler<F, Fut, O>(self, handler: F) -> Result<Function>
    where
        F: Fn(E, JobContext<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: Into<Outcome>,
    {
        let handler = Arc::new(handler);
        let state = self.state.clone();
        self.finish(Arc::new(move |event, ctx: JobContext| {
            let handler = handler.clone();
            let ctx = ctx.with_state(state.clone());
            async move {
                match E::from_event(&event) {
                    Ok(typed) => handler(typed, ctx).await.into(),
                    Err(e) => Outcome::fail(e.to_string()),
                }
            }
            .boxed()
        }))
    }
}

/// Function ids are slugs: they appear in URLs, SQL rows and Inngest's function ids.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(
            "id",
            format!("`{id}` must be 1 to 128 characters of letters, digits and `-_./:`"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builder_refuses_bad_definitions() {
        let err = Function::builder("no-trigger")
            .raw_handler(|_, _| async {})
            .unwrap_err();
        assert_eq!(err.field(), Some("triggers"));
        let err = Function::builder("bad cron")
            .on_event("a")
            .raw_handler(|_, _| async {})
            .unwrap_err();
        assert_eq!(err.field(), Some("id"));
        let err = Function::builder("f")
            .on_cron("not a cron")
            .raw_handler(|_, _| async {})
            .unwrap_err();
        assert_eq!(err.field(), Some("cron"));
        let err = Function::builder("f")
            .on_event("a")
            .concurrency(0)
            .raw_handler(|_, _| async {})
            .unwrap_err();
        assert_eq!(err.field(), Some("concurrency"));
    }

    #[tokio::test]
    async fn run_applies_timeout_and_catches_panics() {
        let slow = Function::builder("slow")
            .on_event("a")
            .timeout(Duration::from_millis(20))
            .raw_handler(|_, ctx: JobContext| async move {
                ctx.cancelled().await;
                Outcome::success()
            })
            .unwrap();
        let ctx = JobContext::new("slow", "r1", Arc::new(Event::new("a", json!({}))), 1, 1);
        let out = slow.run(Event::new("a", json!({})), ctx.clone()).await;
        assert!(matches!(out, Outcome::Retry { ref error, .. } if error.contains("timed out")));
        assert!(ctx.is_cancelled());

        let panics = Function::builder("panics")
            .on_event("a")
            .raw_handler(|_, _| async {
                let boom: Option<Outcome> = std::hint::black_box(None);
                boom.unwrap_or_else(|| panic!("boom"))
            })
            .unwrap();
        let ctx = JobContext::new("panics", "r2", Arc::new(Event::new("a", json!({}))), 1, 1);
        let out: Outcome = panics.run(Event::new("a", json!({})), ctx).await;
        assert!(matches!(out, Outcome::Retry { ref error, .. } if error.contains("boom")));
    }
}
