//! From events and outcomes to queue operations: the jobs an event becomes, the runs a cron
//! schedule fires, and how a finished attempt settles.
//!
//! Pure functions of a function's definition, an event or outcome, and the clock: the
//! runtime's send path, the cron scheduler and the workers share them and none of them owns
//! them. Invariants:
//! - an event becomes one job per function it triggers, in registration order (by id);
//! - an event id deduplicates for 24 hours only when the sender chose it (a generated id is
//!   unique anyway, so it costs no idempotency record), unless the function has its own
//!   idempotency key;
//! - a cron run's event id carries its fire time, so every worker planning the same tick
//!   plans the same job and the queue keeps one;
//! - an attempt is retried only while attempts remain and the outcome allows it.

use std::time::Duration;

use infra_core::{
    ClaimedJob, Event, JobBatch, JobRateLimit, JobSingleton, JobThrottle, NewJob, Settlement,
};

use crate::concurrency_scope::concurrency_slots;
use crate::cron::CronSchedule;
use crate::event_id::{ms_after, now_ms};
use crate::flow_control::key_of;
use crate::function::{CRON_EVENT_NAME, Function, Trigger};
use crate::outcome::Outcome;
use crate::registry::FunctionRegistry;

/// How long an event id chosen by its sender suppresses duplicates, as Inngest does.
const EVENT_ID_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The jobs `events` become: one per triggered function. `caller_ids[i]` says whether event
/// `i` came with its own id (which then deduplicates).
pub(crate) fn plan_jobs(
    registry: &FunctionRegistry,
    events: &[Event],
    caller_ids: &[bool],
    now: i64,
) -> Vec<NewJob> {
    let mut jobs = Vec::new();
    for (event, &dedup) in events.iter().zip(caller_ids) {
        for function in registry.triggered_by(&event.name) {
            jobs.push(plan_job(function, event.clone(), now, dedup));
        }
    }
    jobs
}

/// The job `function` runs for `event`; `dedup_by_id` when the sender chose the event id.
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
        job = job.with_idempotency(format!("event:{id}"), EVENT_ID_WINDOW);
    }
    if let Some(debounce) = &options.debounce {
        let key = match &debounce.key {
            Some(k) => k.evaluate(&job.event).unwrap_or_default(),
            None => String::new(),
        };
        run_at = run_at.max(ms_after(now, debounce.period));
        job.run_at_ms = run_at;
        job.debounce_deadline_ms = debounce.max_wait.map(|w| ms_after(now, w));
        job = job.with_debounce_key(key);
    }
    let period_ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
    if let Some(t) = &options.throttle {
        job.throttle = Some(JobThrottle {
            key: key_of(&t.key, &job.event),
            limit: t.limit.max(1),
            period_ms: period_ms(t.period),
            burst: t.burst.max(1),
        });
    }
    if let Some(r) = &options.rate_limit {
        job.rate_limit = Some(JobRateLimit {
            key: key_of(&r.key, &job.event),
            limit: r.limit.max(1),
            period_ms: period_ms(r.period),
        });
    }
    if let Some(single) = &options.singleton {
        job.singleton = Some(JobSingleton {
            key: key_of(&single.key, &job.event),
            mode: single.mode,
        });
    }
    if let Some(ordering) = &options.ordering {
        job.ordering_key = Some(key_of(&ordering.key, &job.event));
    }
    if let Some(batch) = &options.batch_events {
        job.batch = Some(JobBatch {
            key: key_of(&batch.key, &job.event),
            max_size: batch.max_size.max(1),
            timeout_ms: period_ms(batch.timeout),
        });
        job.run_at_ms = job.run_at_ms.max(ms_after(now, batch.timeout));
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

/// The event a cron trigger of `function` delivers for the tick at `fire_ms`.
pub(crate) fn cron_event(function: &Function, expression: &str, fire_ms: i64) -> Event {
    Event::new(
        CRON_EVENT_NAME,
        serde_json::json!({ "cron": expression, "function": function.id() }),
    )
    .with_id(format!("cron:{}:{fire_ms}", function.id()))
    .with_ts(fire_ms)
}

/// The cron schedules of `function`.
pub(crate) fn cron_triggers(function: &Function) -> impl Iterator<Item = &CronSchedule> {
    function.triggers().iter().filter_map(|t| match t {
        Trigger::Cron(c) => Some(c),
        Trigger::Event(_) => None,
    })
}

/// How a claimed job of `function` settles after its attempt number `attempt` (the step's,
/// which restarts at 1 after each finished step) ended with `outcome`: a retry waits the
/// outcome's own delay, else the function's back-off.
pub(crate) fn settlement(
    function: &Function,
    job: &ClaimedJob,
    attempt: u32,
    outcome: &Outcome,
) -> Settlement {
    match outcome {
        Outcome::Success(_) => Settlement::Completed,
        Outcome::Retry { error, after } => {
            if attempt >= job.max_attempts {
                Settlement::Dead {
                    error: error.clone(),
                }
            } else {
                let delay = after.unwrap_or_else(|| function.options().retry.delay(attempt));
                Settlement::Retry {
                    run_at_ms: ms_after(now_ms(), delay),
                    error: error.clone(),
                }
            }
        }
        Outcome::Fail { error } => Settlement::Dead {
            error: error.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn function() -> Function {
        Function::builder("f")
            .on_event("a/b")
            .retries(1)
            .raw_handler(|_, _| std::future::ready(Outcome::success()))
            .unwrap()
    }

    fn claimed(attempt: u32, max_attempts: u32) -> ClaimedJob {
        ClaimedJob {
            id: 1,
            function_id: "f".into(),
            event: Event::new("a/b", json!({})),
            attempt,
            max_attempts,
            priority: 0,
            concurrency_key: None,
            enqueued_at_ms: 0,
            run_at_ms: 0,
        }
    }

    #[test]
    fn caller_chosen_ids_deduplicate_and_generated_ones_do_not() {
        let mut registry = FunctionRegistry::new();
        registry.register(function()).unwrap();
        let events = [
            Event::new("a/b", json!({})).with_id("mine"),
            Event::new("a/b", json!({})).with_id("generated"),
            Event::new("other", json!({})),
        ];
        let jobs = plan_jobs(&registry, &events, &[true, false, false], 1_000);
        assert_eq!(jobs.len(), 2, "one job per triggered function");
        assert_eq!(jobs[0].idempotency_key.as_deref(), Some("event:mine"));
        assert_eq!(jobs[1].idempotency_key, None);
        assert_eq!((jobs[0].max_attempts, jobs[0].run_at_ms), (2, 1_000));
    }

    #[test]
    fn a_retry_follows_the_outcome_then_the_policy_and_the_last_attempt_is_dead() {
        let f = function();
        let retry = Outcome::retry_after("later", Duration::from_secs(60));
        let before = now_ms();
        match settlement(&f, &claimed(1, 2), 1, &retry) {
            Settlement::Retry { run_at_ms, error } => {
                assert_eq!(error, "later");
                assert!(run_at_ms >= before + 60_000);
            }
            other => panic!("a retry: {other:?}"),
        }
        assert!(matches!(
            settlement(&f, &claimed(2, 2), 2, &retry),
            Settlement::Dead { .. }
        ));
        assert!(matches!(
            settlement(&f, &claimed(1, 2), 1, &Outcome::fail("no")),
            Settlement::Dead { .. }
        ));
        assert_eq!(
            settlement(&f, &claimed(1, 2), 1, &Outcome::success()),
            Settlement::Completed
        );
    }

    #[test]
    fn a_cron_tick_names_its_fire_time() {
        let event = cron_event(&function(), "* * * * *", 60_000);
        assert_eq!(event.id.as_deref(), Some("cron:f:60000"));
        assert_eq!(
            (event.name.as_str(), event.ts),
            (CRON_EVENT_NAME, Some(60_000))
        );
    }
}
