//! [`StepStore`] for the in-process queue: steps and waits in [`StepRecords`](super::step_records),
//! under the queue's one lock, so a park, its enqueues and its waits land together.

use std::sync::Arc;

use async_trait::async_trait;
use infra_core::{
    Event, FinishedStep, JobId, ParkedRun, Result, Resumed, StepState, StepStore, StoredStep,
    WaitCondition, WaitKind,
};
use serde_json::{Value, json};

use super::{MemoryQueue, State};
use crate::event_id::now_ms;

impl State {
    fn held_by(&self, id: JobId, worker: &str) -> bool {
        self.jobs
            .get(&id)
            .and_then(|j| j.lease.as_ref())
            .is_some_and(|(holder, _)| holder == worker)
    }

    /// Makes the parked job `id` due now.
    fn wake_now(&mut self, id: JobId, now: i64) {
        if self.jobs.get(&id).is_some_and(|j| j.lease.is_none()) {
            self.unqueue(id);
            if let Some(job) = self.jobs.get_mut(&id) {
                job.new.run_at_ms = now;
            }
            self.queue(id, now);
        }
    }

    /// Cancels the job `id`: a queued or parked one leaves with everything of it, a running
    /// one is stopped by its worker (at its next step or heartbeat).
    pub(super) fn cancel_job(&mut self, id: JobId) {
        if self.jobs.get(&id).is_some_and(|j| j.lease.is_some()) {
            self.runs.request_cancel(id);
            if let Some(job) = self.jobs.get(&id) {
                // It no longer holds its singleton key or its place in line.
                let new = job.new.clone();
                self.flow.remove(id, &new);
            }
            return;
        }
        self.unqueue(id);
        if let Some(job) = self.release_lease(id) {
            self.flow.remove(id, &job.new);
        }
        self.runs.forget(id);
    }
}

#[async_trait]
impl StepStore for MemoryQueue {
    async fn load_steps(&self, jobs: &[JobId]) -> Result<Vec<StoredStep>> {
        let s = self.lock();
        Ok(jobs
            .iter()
            .flat_map(|&job| {
                s.runs.steps_of(job).map(move |(id, state)| StoredStep {
                    job_id: job,
                    step_id: id.clone(),
                    state: state.clone(),
                })
            })
            .collect())
    }

    async fn save_steps(&self, worker: &str, steps: Vec<FinishedStep>) -> Result<Vec<bool>> {
        let mut s = self.lock();
        Ok(steps
            .into_iter()
            .map(|step| {
                if !s.held_by(step.job_id, worker) || s.runs.is_cancel_requested(step.job_id) {
                    return false;
                }
                s.runs
                    .record(step.job_id, &step.step_id, StepState::Done(step.output));
                if let Some(job) = s.jobs.get_mut(&step.job_id) {
                    job.attempts = 1;
                }
                true
            })
            .collect())
    }

    async fn park(&self, worker: &str, runs: Vec<ParkedRun>) -> Result<Vec<bool>> {
        let now = now_ms();
        let mut held = Vec::with_capacity(runs.len());
        {
            let mut s = self.lock();
            for run in runs {
                if !s.held_by(run.job_id, worker) || s.runs.is_cancel_requested(run.job_id) {
                    held.push(false);
                    continue;
                }
                let Some(mut job) = s.release_lease(run.job_id) else {
                    held.push(false);
                    continue;
                };
                job.lease = None;
                job.attempts = 0;
                job.new.run_at_ms = run.until_ms;
                job.new.debounce_key = None;
                s.jobs.insert(run.job_id, job);
                s.queue(run.job_id, now);
                let state = match &run.wait {
                    Some(_) => StepState::Waiting {
                        until_ms: run.until_ms,
                    },
                    None => StepState::Sleeping {
                        until_ms: run.until_ms,
                    },
                };
                s.runs.record(run.job_id, &run.step_id, state);
                s.runs.drop_waits(run.job_id);
                for wait in run.wait.into_iter().chain(run.cancel_on) {
                    s.runs.add_wait(run.job_id, wait);
                }
                s.enqueue(run.enqueue, now);
                held.push(true);
            }
        }
        self.wake.notify_waiters();
        self.wake.notify_one();
        Ok(held)
    }

    async fn expire_wait(&self, job: JobId, step_id: &str) -> Result<Option<Value>> {
        let mut s = self.lock();
        match s.runs.step(job, step_id).cloned() {
            Some(StepState::Waiting { .. }) => {
                let output = json!({ "data": null });
                s.runs.drop_waits(job);
                s.runs.record(job, step_id, StepState::Done(output.clone()));
                Ok(Some(output))
            }
            Some(StepState::Done(output)) => Ok(Some(output)),
            _ => Ok(None),
        }
    }

    async fn deliver(
        &self,
        events: &[Event],
        check: Arc<dyn WaitCondition>,
    ) -> Result<Vec<Resumed>> {
        let now = now_ms();
        let mut resumed: Vec<Resumed> = Vec::new();
        {
            let mut s = self.lock();
            for event in events {
                let json = serde_json::to_value(event)?;
                for (job, spec) in s.runs.candidates(event, &json) {
                    if resumed.iter().any(|r| r.job_id == job) {
                        continue;
                    }
                    if let Some(condition) = &spec.condition
                        && !check.accepts(condition, event)
                    {
                        continue;
                    }
                    match &spec.kind {
                        WaitKind::Step(step_id) => {
                            s.runs.drop_waits(job);
                            s.runs.record(
                                job,
                                step_id,
                                StepState::Done(json!({ "data": json.clone() })),
                            );
                            s.wake_now(job, now);
                        }
                        WaitKind::Cancel => s.cancel_job(job),
                    }
                    resumed.push(Resumed {
                        job_id: job,
                        kind: spec.kind.clone(),
                    });
                }
            }
        }
        if !resumed.is_empty() {
            self.wake.notify_waiters();
            self.wake.notify_one();
        }
        Ok(resumed)
    }

    async fn cancel_requested(&self, worker: &str, jobs: &[JobId]) -> Result<Vec<JobId>> {
        let s = self.lock();
        Ok(jobs
            .iter()
            .copied()
            .filter(|&j| s.held_by(j, worker) && s.runs.is_cancel_requested(j))
            .collect())
    }
}
