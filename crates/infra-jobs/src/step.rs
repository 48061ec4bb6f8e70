//! Durable steps: [`Step`], got from [`JobContext::step`](crate::JobContext::step).
//!
//! A function that uses steps runs from the top on every execution; a step that finished in an
//! earlier execution returns its recorded result (its closure is not called again), so a
//! crash, a deploy or a retry resumes after the last finished step. The same function code
//! runs on every backend: on `MemoryQueue` and `PgQueue` results are recorded in the queue,
//! and a sleeping or waiting run is a row with a wake time that holds no worker; served to
//! Inngest, results travel in Inngest's call requests and new steps are reported in `206`
//! replies.
//!
//! Ids: each step has an id unique in the function; a step repeated in a loop is counted as
//! Inngest's SDKs count it (`id`, `id:1`, `id:2`…). Results are JSON: a step's type is
//! checked when its recorded result is read back, and a mismatch is a `Decode` error (a
//! function changed under a running run), never a panic.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infra_core::{Error, ErrorKind, Event, ParkedRun, Result, StepState, WaitKind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::event_id::{ms_after, now_ms};
use crate::run_steps::{Driver, RunSteps, report};
use crate::step_id::StepKey;
use crate::step_plan::Interrupt;
use crate::time_string::time_string;
use crate::wait_match::Match;

/// The name of the event an invoked function receives, as Inngest names it.
pub const INVOKED_EVENT_NAME: &str = "inngest/function.invoked";
/// The name of the event an invoked function's end sends, as Inngest names it.
pub const FINISHED_EVENT_NAME: &str = "inngest/function.finished";

/// The step tools of one execution.
///
/// ```
/// use std::time::Duration;
/// use infra_jobs::{Function, JobContext, Match, Outcome};
///
/// let onboarding = Function::builder("onboarding")
///     .on_event("user/signed.up")
///     .raw_handler(|event: infra_core::Event, ctx: JobContext| async move {
///         let step = ctx.step();
///         let user: String = step
///             .run("create-user", || async { Ok::<_, infra_core::Error>("u1".to_owned()) })
///             .await?;
///         step.sleep("wait-a-day", Duration::from_secs(86_400)).await?;
///         let verified = step
///             .wait_for_event("verified", "user/verified", Match::field("data.userId"), Duration::from_secs(3_600))
///             .await?;
///         Ok::<_, infra_core::Error>(serde_json::json!({ "user": user, "verified": verified.is_some() }))
///     })
///     .unwrap();
/// # let _ = onboarding;
/// ```
#[derive(Clone, Copy)]
pub struct Step<'a> {
    steps: &'a RunSteps,
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("run_id", &self.steps.run_id())
            .finish_non_exhaustive()
    }
}

/// A step's failure after its retries, as the error its caller sees: non-retryable, since
/// retrying the function cannot change a recorded failure.
fn step_failed(key: &StepKey, name: &str, message: &str) -> Error {
    Error::new(
        ErrorKind::Backend,
        format!("step `{}` failed: {name}: {message}", key.id),
    )
    .with_retryable(false)
    .with_context("step", key.id.clone())
}

/// A recorded result that is not what the code reading it expects.
fn mismatch(key: &StepKey, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("step `{}`'s recorded result {what}", key.id),
    )
    .with_retryable(false)
    .with_context("step", key.id.clone())
}

/// Reads a recorded `{"data": …}` / `{"error": …}` as `T`.
fn decode<T: DeserializeOwned>(key: &StepKey, output: Value) -> Result<T> {
    if let Some(err) = output.get("error") {
        let name = err["name"].as_str().unwrap_or("Error");
        let message = err["message"].as_str().unwrap_or_default();
        return Err(step_failed(key, name, message));
    }
    let data = output.get("data").cloned().unwrap_or(Value::Null);
    serde_json::from_value(data).map_err(|e| {
        mismatch(key, format_args!("does not decode as the asked type: {e}")).with_source(e)
    })
}

/// The recorded form of an error, as Inngest's SDKs serialize a plain error.
fn error_body(err: &Error) -> Value {
    json!({"name": "Error", "message": err.message()})
}

fn system_time_ms(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl<'a> Step<'a> {
    pub(crate) fn new(steps: &'a RunSteps) -> Self {
        Step { steps }
    }

    /// Runs `f` once for the run: its result is recorded, and later executions return the
    /// recorded result without calling `f`. A retryable error retries the step (the run from
    /// the top, its finished steps skipped) under the function's retry policy; after the last
    /// attempt, or for an error that is not retryable, the failure is recorded and returned
    /// (as a non-retryable error: returning it fails the run).
    pub async fn run<T, F, Fut, E>(&self, id: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = std::result::Result<T, E>> + Send,
        E: Into<Error>,
    {
        let key = self.steps.next_key(id);
        match self.steps.memo(&key).await {
            Some(StepState::Done(output)) => return decode(&key, output),
            Some(_) => return Err(mismatch(&key, "is a sleep or a wait, not a run step")),
            None => {}
        }
        match self.steps.driver() {
            Driver::Ephemeral => f().await.map_err(Into::into),
            Driver::Inngest(run) => {
                self.steps
                    .inngest_may_run(run, &key, Some((&key.id, json!({}))))
                    .await;
                let result = f().await.map_err(Into::into);
                let name = Value::String(key.id.clone());
                let op = match result {
                    Ok(value) => {
                        let mut op = report(&key, "StepRun", name, json!({}));
                        op["data"] = serde_json::to_value(&value)?;
                        op
                    }
                    Err(err) => {
                        let mut op = report(&key, "StepError", name, json!({}));
                        op["error"] = error_body(&err);
                        op["data"] = Value::Null;
                        op
                    }
                };
                self.steps.stop(Interrupt::Report(op)).await
            }
            Driver::Queue(_) => match f().await.map_err(Into::into) {
                Ok(value) => {
                    let data = serde_json::to_value(&value)?;
                    self.steps.record(&key, json!({ "data": data })).await;
                    Ok(value)
                }
                Err(err)
                    if err.is_retryable() && self.steps.attempt() < self.steps.max_attempts() =>
                {
                    self.steps
                        .stop(Interrupt::StepFailed {
                            error: format!("step `{}`: {err}", key.id),
                            after: err.retry_after(),
                        })
                        .await
                }
                Err(err) => {
                    let body = error_body(&err);
                    self.steps.record(&key, json!({ "error": body })).await;
                    Err(step_failed(&key, "Error", err.message()))
                }
            },
        }
    }

    /// Pauses the run for `duration` without holding a worker.
    pub async fn sleep(&self, id: &str, duration: Duration) -> Result<()> {
        let until = ms_after(now_ms(), duration);
        self.sleep_step(id, until, time_string(duration), duration)
            .await
    }

    /// Pauses the run until `at` without holding a worker; a time past returns at once.
    pub async fn sleep_until(&self, id: &str, at: SystemTime) -> Result<()> {
        let until = system_time_ms(at);
        let wait = Duration::from_millis(u64::try_from(until - now_ms()).unwrap_or(0));
        self.sleep_step(id, until, iso(until), wait).await
    }

    async fn sleep_step(&self, id: &str, until: i64, name: String, wait: Duration) -> Result<()> {
        let key = self.steps.next_key(id);
        let planned_until = match self.steps.memo(&key).await {
            Some(StepState::Done(_)) => return Ok(()),
            Some(StepState::Sleeping { until_ms }) => Some(until_ms),
            Some(StepState::Waiting { .. }) => {
                return Err(mismatch(&key, "is a wait, not a sleep"));
            }
            None => None,
        };
        match self.steps.driver() {
            Driver::Ephemeral => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Driver::Inngest(run) => {
                self.steps.inngest_may_run(run, &key, None).await;
                let op = report(&key, "Sleep", Value::String(name), json!({}));
                self.steps.stop(Interrupt::Report(with_null_data(op))).await
            }
            Driver::Queue(run) => {
                let until = planned_until.unwrap_or(until);
                if until <= run.claimed_run_at_ms.max(now_ms()) {
                    return Ok(());
                }
                let parked = ParkedRun::sleeping(run.job_id, key.hashed.clone(), until);
                self.steps.park(run, parked).await
            }
        }
    }

    /// Waits up to `timeout` for an event named `event` that `matching` accepts, without
    /// holding a worker; returns it, or `None` at the timeout. Only events sent after the wait
    /// began are seen.
    pub async fn wait_for_event(
        &self,
        id: &str,
        event: &str,
        matching: Match,
        timeout: Duration,
    ) -> Result<Option<Event>> {
        let key = self.steps.next_key(id);
        let waiting_until = match self.steps.memo(&key).await {
            Some(StepState::Done(output)) => return decode(&key, output),
            Some(StepState::Waiting { until_ms }) => Some(until_ms),
            Some(StepState::Sleeping { .. }) => {
                return Err(mismatch(&key, "is a sleep, not a wait"));
            }
            None => None,
        };
        match self.steps.driver() {
            Driver::Ephemeral => Err(Error::new(
                ErrorKind::Config,
                "wait_for_event needs a runtime: the context was not built by one",
            )),
            Driver::Inngest(run) => {
                self.steps.inngest_may_run(run, &key, None).await;
                let mut opts = json!({"timeout": time_string(timeout)});
                if let Some(expression) = matching.expression_text() {
                    opts["if"] = Value::String(expression);
                }
                let op = report(&key, "WaitForEvent", Value::String(event.to_owned()), opts);
                self.steps.stop(Interrupt::Report(with_null_data(op))).await
            }
            Driver::Queue(run) => {
                if let Some(until) = waiting_until
                    && until <= run.claimed_run_at_ms.max(now_ms())
                {
                    let output = run
                        .journal
                        .expire_wait(run.job_id, &key.hashed)
                        .await?
                        .unwrap_or(json!({"data": null}));
                    return decode(&key, output);
                }
                let until = waiting_until.unwrap_or_else(|| ms_after(now_ms(), timeout));
                let wait = matching
                    .wait_for(
                        event,
                        self.steps.event(),
                        WaitKind::Step(key.hashed.clone()),
                    )
                    .map_err(|e| e.with_context("step", key.id.clone()))?;
                let parked = ParkedRun::waiting(run.job_id, key.hashed.clone(), until, wait);
                self.steps.park(run, parked).await
            }
        }
    }

    /// Runs the function `function_id` on `data` and returns its output, waiting up to
    /// `timeout` without holding a worker. Its failure, or the timeout, is this step's
    /// failure.
    pub async fn invoke<T: DeserializeOwned>(
        &self,
        id: &str,
        function_id: &str,
        data: Value,
        timeout: Duration,
    ) -> Result<T> {
        let key = self.steps.next_key(id);
        let waiting_until = match self.steps.memo(&key).await {
            Some(StepState::Done(output)) => return self.invoked_output(&key, output),
            Some(StepState::Waiting { until_ms }) => Some(until_ms),
            Some(StepState::Sleeping { .. }) => {
                return Err(mismatch(&key, "is a sleep, not an invocation"));
            }
            None => None,
        };
        match self.steps.driver() {
            Driver::Ephemeral => Err(Error::new(
                ErrorKind::Config,
                "invoke needs a runtime: the context was not built by one",
            )),
            Driver::Inngest(run) => {
                self.steps.inngest_may_run(run, &key, None).await;
                let opts = json!({
                    "payload": {"data": data},
                    "function_id": format!("{}-{function_id}", run.app_id),
                    "timeout": time_string(timeout),
                });
                let op = report(&key, "InvokeFunction", Value::Null, opts);
                self.steps.stop(Interrupt::Report(with_null_data(op))).await
            }
            Driver::Queue(run) => {
                if let Some(until) = waiting_until
                    && until <= run.claimed_run_at_ms.max(now_ms())
                {
                    let output = run.journal.expire_wait(run.job_id, &key.hashed).await?;
                    return self.invoked_output(&key, output.unwrap_or(json!({"data": null})));
                }
                let correlation = format!("{}.{}", self.steps.run_id(), key.hashed);
                let until = waiting_until.unwrap_or_else(|| ms_after(now_ms(), timeout));
                let wait = Match::Any
                    .wait_for(
                        FINISHED_EVENT_NAME,
                        self.steps.event(),
                        WaitKind::Step(key.hashed.clone()),
                    )?
                    .with_key("data.correlation_id", correlation.clone());
                let mut parked = ParkedRun::waiting(run.job_id, key.hashed.clone(), until, wait);
                if waiting_until.is_none() {
                    let mut payload = match data {
                        Value::Object(map) => map,
                        Value::Null => Default::default(),
                        other => {
                            return Err(Error::invalid_input(
                                "data",
                                format!("of invoke step `{id}` must be a JSON object, not {other}"),
                            ));
                        }
                    };
                    payload.insert(
                        "_inngest".into(),
                        json!({"correlation_id": correlation, "source_run_id": self.steps.run_id()}),
                    );
                    let child = Event::new(INVOKED_EVENT_NAME, Value::Object(payload))
                        .with_id(correlation)
                        .with_ts(now_ms());
                    let job = run.invocations.plan(function_id, child).ok_or_else(|| {
                        Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "invoke step `{id}`: no function `{function_id}` is registered"
                            ),
                        )
                        .with_retryable(false)
                    })?;
                    parked = parked.with_enqueue(vec![job]);
                }
                self.steps.park(run, parked).await
            }
        }
    }

    /// The output of an invocation from its step's record: Inngest records the function's
    /// `{data}` or `{error}`; our queues record the `inngest/function.finished` event.
    fn invoked_output<T: DeserializeOwned>(&self, key: &StepKey, output: Value) -> Result<T> {
        if matches!(self.steps.driver(), Driver::Inngest(_)) {
            return decode(key, output);
        }
        let finished = &output["data"];
        if finished.is_null() {
            return Err(
                Error::timeout(&format!("invoke step `{}`", key.id), Duration::ZERO)
                    .with_retryable(false)
                    .with_context("step", key.id.clone()),
            );
        }
        let data = &finished["data"];
        if let Some(err) = data.get("error") {
            return decode(key, json!({ "error": err }));
        }
        decode(
            key,
            json!({ "data": data.get("result").cloned().unwrap_or(Value::Null) }),
        )
    }

    /// Sends `events` once for the run: later executions return the ids recorded the first
    /// time. Events without an id get one derived from the run and the step, so a send
    /// repeated after a crash is dropped as a duplicate.
    pub async fn send_event(&self, id: &str, mut events: Vec<Event>) -> Result<Vec<String>> {
        let key = self.steps.next_key(id);
        match self.steps.memo(&key).await {
            Some(StepState::Done(output)) => {
                let ids: SentIds = decode(&key, output)?;
                return Ok(ids.ids);
            }
            Some(_) => return Err(mismatch(&key, "is a sleep or a wait, not a send")),
            None => {}
        }
        for (i, event) in events.iter_mut().enumerate() {
            event
                .id
                .get_or_insert_with(|| format!("{}-{}-{i}", self.steps.run_id(), key.hashed));
        }
        match self.steps.driver() {
            Driver::Ephemeral => Err(Error::new(
                ErrorKind::Config,
                "send_event needs a runtime: the context was not built by one",
            )),
            Driver::Inngest(run) => {
                self.steps
                    .inngest_may_run(
                        run,
                        &key,
                        Some(("sendEvent", json!({"type": "step.sendEvent"}))),
                    )
                    .await;
                let result = match &run.sender {
                    Some(sender) => sender.send_many(events).await,
                    None => Err(Error::config(
                        "INNGEST_EVENT_KEY",
                        "is not set: send_event has nowhere to send",
                    )),
                };
                let name = Value::String("sendEvent".into());
                let opts = json!({"type": "step.sendEvent"});
                let op = match result {
                    Ok(ids) => {
                        let mut op = report(&key, "StepRun", name, opts);
                        op["data"] = json!({ "ids": ids });
                        op
                    }
                    Err(err) => {
                        let mut op = report(&key, "StepError", name, opts);
                        op["error"] = error_body(&err);
                        op["data"] = Value::Null;
                        op
                    }
                };
                self.steps.stop(Interrupt::Report(op)).await
            }
            Driver::Queue(run) => match run.sender.send_many(events).await {
                Ok(ids) => {
                    self.steps.record(&key, json!({"data": {"ids": ids}})).await;
                    Ok(ids)
                }
                Err(err) => {
                    self.steps
                        .stop(Interrupt::StepFailed {
                            error: format!("step `{}`: {err}", key.id),
                            after: err.retry_after(),
                        })
                        .await
                }
            },
        }
    }
}

#[derive(serde::Deserialize)]
struct SentIds {
    ids: Vec<String>,
}

fn with_null_data(mut op: Value) -> Value {
    op["data"] = Value::Null;
    op
}
