//! The in-process queue's durable steps and waits: recorded steps per job, and waits indexed
//! by (event name, key) with the paths each event name is waited on by, so an arriving event
//! finds its waits without a scan.
//!
//! Invariants: a job's waits are all in `waits` and listed in `by_job`, or in neither;
//! `paths` counts the keyed waits per (event name, path).

use std::collections::{HashMap, HashSet};

use infra_core::{Event, JobId, StepState, WaitKey, WaitSpec};
use serde_json::Value;

type WaitIndex = (String, Option<WaitKey>);

#[derive(Default)]
pub(super) struct StepRecords {
    steps: HashMap<JobId, HashMap<String, StepState>>,
    waits: HashMap<WaitIndex, Vec<(JobId, WaitSpec)>>,
    paths: HashMap<String, HashMap<String, usize>>,
    by_job: HashMap<JobId, Vec<WaitIndex>>,
    cancel_requested: HashSet<JobId>,
}

impl StepRecords {
    /// The recorded steps of `job`.
    pub(super) fn steps_of(&self, job: JobId) -> impl Iterator<Item = (&String, &StepState)> {
        self.steps.get(&job).into_iter().flatten()
    }

    /// The state of one step.
    pub(super) fn step(&self, job: JobId, step_id: &str) -> Option<&StepState> {
        self.steps.get(&job)?.get(step_id)
    }

    /// Records a step's state; a finished step keeps its first output.
    pub(super) fn record(&mut self, job: JobId, step_id: &str, state: StepState) {
        let steps = self.steps.entry(job).or_default();
        if !matches!(steps.get(step_id), Some(StepState::Done(_))) {
            steps.insert(step_id.to_owned(), state);
        }
    }

    /// Sets a step's state, whatever it was.
    pub(super) fn replace(&mut self, job: JobId, step_id: &str, state: StepState) {
        self.steps
            .entry(job)
            .or_default()
            .insert(step_id.to_owned(), state);
    }

    /// Adds a wait of `job`.
    pub(super) fn add_wait(&mut self, job: JobId, spec: WaitSpec) {
        let index = (spec.event.clone(), spec.key.clone());
        if let Some(key) = &spec.key {
            *self
                .paths
                .entry(spec.event.clone())
                .or_default()
                .entry(key.path.clone())
                .or_default() += 1;
        }
        self.by_job.entry(job).or_default().push(index.clone());
        self.waits.entry(index).or_default().push((job, spec));
    }

    /// Removes every wait of `job`.
    pub(super) fn drop_waits(&mut self, job: JobId) {
        for index in self.by_job.remove(&job).unwrap_or_default() {
            if let Some(list) = self.waits.get_mut(&index) {
                list.retain(|(j, _)| *j != job);
                if list.is_empty() {
                    self.waits.remove(&index);
                }
            }
            if let (name, Some(key)) = &index
                && let Some(paths) = self.paths.get_mut(name)
                && let Some(n) = paths.get_mut(&key.path)
            {
                *n -= 1;
                if *n == 0 {
                    paths.remove(&key.path);
                }
            }
        }
    }

    /// Removes everything of `job` (it completed or was cancelled).
    pub(super) fn forget(&mut self, job: JobId) {
        self.drop_waits(job);
        self.steps.remove(&job);
        self.cancel_requested.remove(&job);
    }

    /// Removes `job`'s failed steps, so a replayed run tries them again.
    pub(super) fn clear_errors(&mut self, job: JobId) {
        if let Some(steps) = self.steps.get_mut(&job) {
            steps.retain(|_, s| !matches!(s, StepState::Done(out) if out.get("error").is_some()));
        }
    }

    /// Asks for `job`'s cancellation (its worker stops it).
    pub(super) fn request_cancel(&mut self, job: JobId) {
        self.cancel_requested.insert(job);
    }

    /// Whether `job`'s cancellation was asked for.
    pub(super) fn is_cancel_requested(&self, job: JobId) -> bool {
        self.cancel_requested.contains(&job)
    }

    /// The waits `event` may end, keyed ones first: found through the index, never by
    /// scanning other names or keys.
    pub(super) fn candidates(&self, event: &Event, json: &Value) -> Vec<(JobId, WaitSpec)> {
        let mut out = Vec::new();
        if let Some(paths) = self.paths.get(&event.name) {
            for path in paths.keys() {
                let value = path.split('.').try_fold(json, |v, field| v.get(field));
                let Some(text) = value.and_then(crate::expression::key_text) else {
                    continue;
                };
                let index = (
                    event.name.clone(),
                    Some(WaitKey {
                        path: path.clone(),
                        value: text,
                    }),
                );
                out.extend(self.waits.get(&index).into_iter().flatten().cloned());
            }
        }
        let unkeyed = (event.name.clone(), None);
        out.extend(self.waits.get(&unkeyed).into_iter().flatten().cloned());
        out
    }
}
