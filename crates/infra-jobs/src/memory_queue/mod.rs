//! `MemoryQueue`: the in-process queue, the embedded default.
//!
//! Same semantics as the PostgreSQL queue (priorities, delays, leases, idempotency windows,
//! debounce, dead letters, replay) without durability: a laptop runs the app's functions with
//! zero setup. Ready jobs sit in an ordered set keyed like the PostgreSQL claim's `ORDER BY`,
//! so a claim costs O(log n) per job rather than a scan.
//!
//! Invariants: every live job is in exactly one of `ready`, `scheduled` and `leased`, or is
//! a dead letter (kept in `jobs` for replay, in no index); one mutex guards it all, and each
//! call holds it once.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use infra_core::{
    ClaimedJob, DeadLetter, Enqueued, Error, ErrorKind, FunctionQueueStats, JobFilter, JobId,
    JobQueue, NewJob, QueueAdmin, Result, Settlement, SingletonMode, StepState,
};
use tokio::sync::Notify;

use crate::event_id::{ms_after, now_ms};
use crate::flow_control::BATCH_STEP_ID;

use self::flow_state::FlowState;
use self::step_records::StepRecords;

mod flow_state;
mod step_records;
mod steps;

struct Job {
    new: NewJob,
    enqueued_at_ms: i64,
    attempts: u32,
    /// Who holds it and until when.
    lease: Option<(String, i64)>,
}

#[derive(Default)]
struct State {
    next_id: JobId,
    jobs: HashMap<JobId, Job>,
    /// Due-ordered: (priority desc, run_at, id) of unclaimed jobs that are due.
    ready: BTreeSet<(Reverse<i32>, i64, JobId)>,
    /// Unclaimed jobs due later: (run_at, id).
    scheduled: BTreeSet<(i64, JobId)>,
    /// Claimed jobs by lease expiry: (until, id).
    leased: BTreeSet<(i64, JobId)>,
    /// (function, key) → when the key stops suppressing duplicates.
    idempotency: HashMap<(String, String), i64>,
    /// (function, key) → the waiting job that absorbs debounced events.
    debounce: HashMap<(String, String), JobId>,
    dead: Vec<DeadLetter>,
    /// Durable steps and waits ([`StepStore`](infra_core::StepStore), in `steps.rs`).
    runs: StepRecords,
    /// Throttles, rate limits, singletons, ordering and batches.
    flow: FlowState,
}

impl State {
    fn queue(&mut self, id: JobId, now: i64) {
        let job = &self.jobs[&id];
        if job.new.run_at_ms <= now {
            self.ready
                .insert((Reverse(job.new.priority), job.new.run_at_ms, id));
        } else {
            self.scheduled.insert((job.new.run_at_ms, id));
        }
    }

    fn unqueue(&mut self, id: JobId) {
        let job = &self.jobs[&id];
        self.ready
            .remove(&(Reverse(job.new.priority), job.new.run_at_ms, id));
        self.scheduled.remove(&(job.new.run_at_ms, id));
    }

    /// Moves due scheduled jobs and expired leases into `ready`.
    fn promote(&mut self, now: i64) {
        while let Some(&(at, id)) = self.scheduled.first() {
            if at > now {
                break;
            }
            self.scheduled.pop_first();
            let p = self.jobs[&id].new.priority;
            self.ready.insert((Reverse(p), at, id));
        }
        while let Some(&(until, id)) = self.leased.first() {
            if until >= now {
                break;
            }
            self.leased.pop_first();
            if let Some(job) = self.jobs.get_mut(&id) {
                job.lease = None;
                let key = (Reverse(job.new.priority), job.new.run_at_ms, id);
                self.ready.insert(key);
            }
        }
    }

    /// Puts the dead letter at `pos` back, due `now` with its attempts reset.
    fn revive(&mut self, pos: usize, now: i64) {
        let dead = self.dead.remove(pos);
        let job = self
            .jobs
            .get_mut(&dead.id)
            .expect("dead letters keep their job");
        job.attempts = 0;
        job.new.run_at_ms = now;
        self.queue(dead.id, now);
        self.runs.clear_errors(dead.id);
    }

    /// Adds jobs (see [`JobQueue::enqueue`]).
    fn enqueue(&mut self, jobs: Vec<NewJob>, now: i64) -> Vec<Enqueued> {
        let s = self;
        let mut results = Vec::with_capacity(jobs.len());
        for mut new in jobs {
            if let Some(key) = &new.idempotency_key {
                let k = (new.function_id.clone(), key.clone());
                match s.idempotency.get(&k) {
                    Some(&until) if until > now => {
                        results.push(Enqueued::Duplicate);
                        continue;
                    }
                    _ => {
                        let until = ms_after(now, new.idempotency_window);
                        s.idempotency.insert(k, until);
                    }
                }
            }
            if let Some(r) = &new.rate_limit
                && !s.flow.rate_allows(&new.function_id, r, now)
            {
                results.push(Enqueued::Duplicate);
                continue;
            }
            if let Some(single) = &new.singleton {
                let k = (new.function_id.clone(), single.key.clone());
                if let Some(&other) = s.flow.singletons.get(&k)
                    && s.jobs.contains_key(&other)
                    && !s.dead.iter().any(|d| d.id == other)
                {
                    match single.mode {
                        SingletonMode::Skip => {
                            results.push(Enqueued::Duplicate);
                            continue;
                        }
                        SingletonMode::Cancel => s.cancel_job(other),
                    }
                }
            }
            if let Some(batch) = &new.batch {
                let k = (new.function_id.clone(), batch.key.clone());
                if let Some(&id) = s.flow.batches.get(&k)
                    && s.jobs.get(&id).is_some_and(|j| j.lease.is_none())
                {
                    s.add_to_batch(id, &new, batch.max_size, now);
                    results.push(Enqueued::Debounced(id));
                    continue;
                }
            }
            if let Some(key) = &new.debounce_key {
                let k = (new.function_id.clone(), key.clone());
                if let Some(&id) = s.debounce.get(&k)
                    && s.jobs.get(&id).is_some_and(|j| j.lease.is_none())
                {
                    s.unqueue(id);
                    let job = s.jobs.get_mut(&id).expect("debounced job exists");
                    job.new.event = new.event;
                    // A debounce's maximum wait: never past the key's first deadline.
                    job.new.run_at_ms = match job.new.debounce_deadline_ms {
                        Some(deadline) => new.run_at_ms.min(deadline),
                        None => new.run_at_ms,
                    };
                    s.queue(id, now);
                    results.push(Enqueued::Debounced(id));
                    continue;
                }
            }
            if let Some(t) = &new.throttle {
                let start = s.flow.throttle_start(&new.function_id, t, now);
                new.run_at_ms = new.run_at_ms.max(start);
            }
            s.next_id += 1;
            let id = s.next_id;
            s.flow.add(id, &new);
            if new.batch.is_some() {
                let first = serde_json::to_value(&new.event).unwrap_or_default();
                let events = serde_json::json!({ "data": [first] });
                s.runs.replace(id, BATCH_STEP_ID, StepState::Done(events));
            }
            if let Some(key) = &new.debounce_key {
                s.debounce
                    .insert((new.function_id.clone(), key.clone()), id);
            }
            s.jobs.insert(
                id,
                Job {
                    new,
                    enqueued_at_ms: now,
                    attempts: 0,
                    lease: None,
                },
            );
            s.queue(id, now);
            results.push(Enqueued::Added(id));
        }
        if s.idempotency.len() > 100_000 {
            s.idempotency.retain(|_, until| *until > now);
        }
        results
    }

    /// Adds `new`'s event to the open batch `id`; a full batch is due now and closed.
    fn add_to_batch(&mut self, id: JobId, new: &NewJob, max_size: u32, now: i64) {
        let mut events = match self.runs.step(id, BATCH_STEP_ID) {
            Some(StepState::Done(v)) => v["data"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        events.push(serde_json::to_value(&new.event).unwrap_or_default());
        let full = events.len() >= max_size as usize;
        let recorded = StepState::Done(serde_json::json!({ "data": events }));
        self.runs.replace(id, BATCH_STEP_ID, recorded);
        if full {
            self.unqueue(id);
            let job = self.jobs.get_mut(&id).expect("a batch's job exists");
            job.new.run_at_ms = now;
            let of_job = job.new.clone();
            self.flow.close_batch(id, &of_job);
            self.queue(id, now);
        }
    }

    fn release_lease(&mut self, id: JobId) -> Option<Job> {
        let job = self.jobs.remove(&id)?;
        if let Some((_, until)) = &job.lease {
            self.leased.remove(&(*until, id));
        }
        if let Some(key) = &job.new.debounce_key {
            let k = (job.new.function_id.clone(), key.clone());
            if self.debounce.get(&k) == Some(&id) {
                self.debounce.remove(&k);
            }
        }
        Some(job)
    }
}

/// The in-process job queue.
#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<State>,
    wake: Notify,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue").finish_non_exhaustive()
    }
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        MemoryQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the sets half-updated in a way that
        // loses jobs (each mutation is a single insert/remove), so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        let results = self.lock().enqueue(jobs, now_ms());
        self.wake.notify_waiters();
        self.wake.notify_one();
        Ok(results)
    }

    async fn claim(&self, worker: &str, limit: usize, lease: Duration) -> Result<Vec<ClaimedJob>> {
        let now = now_ms();
        let until = ms_after(now, lease);
        let mut s = self.lock();
        s.promote(now);
        let mut claimed = Vec::new();
        let mut held_back = Vec::new();
        while claimed.len() < limit {
            let Some(entry) = s.ready.pop_first() else {
                break;
            };
            let id = entry.2;
            if !s.flow.is_next_in_order(id, &s.jobs[&id].new) {
                // An earlier run of its ordering key is live: it waits its turn.
                held_back.push(entry);
                continue;
            }
            s.leased.insert((until, id));
            let job = s.jobs.get_mut(&id).expect("ready job exists");
            job.attempts += 1;
            job.lease = Some((worker.to_owned(), until));
            if let Some(key) = &job.new.debounce_key {
                // A running job no longer absorbs new events: the next one waits anew.
                let k = (job.new.function_id.clone(), key.clone());
                if s.debounce.get(&k) == Some(&id) {
                    s.debounce.remove(&k);
                }
            }
            let new_of_job = s.jobs[&id].new.clone();
            s.flow.close_batch(id, &new_of_job);
            let job = &s.jobs[&id];
            claimed.push(ClaimedJob {
                id,
                function_id: job.new.function_id.clone(),
                event: job.new.event.clone(),
                attempt: job.attempts,
                max_attempts: job.new.max_attempts,
                priority: job.new.priority,
                concurrency_key: job.new.concurrency_key.clone(),
                enqueued_at_ms: job.enqueued_at_ms,
                run_at_ms: job.new.run_at_ms,
            });
        }
        s.ready.extend(held_back);
        Ok(claimed)
    }

    async fn heartbeat(&self, worker: &str, ids: &[JobId], lease: Duration) -> Result<()> {
        let until = ms_after(now_ms(), lease);
        let mut s = self.lock();
        for &id in ids {
            let Some(job) = s.jobs.get_mut(&id) else {
                continue;
            };
            let Some((holder, old)) = &mut job.lease else {
                continue;
            };
            if holder != worker {
                continue;
            }
            let old_until = *old;
            *old = until;
            s.leased.remove(&(old_until, id));
            s.leased.insert((until, id));
        }
        Ok(())
    }

    async fn settle(&self, worker: &str, settled: Vec<(JobId, Settlement)>) -> Result<()> {
        let now = now_ms();
        let mut woke = false;
        {
            let mut s = self.lock();
            for (id, settlement) in settled {
                let held = s
                    .jobs
                    .get(&id)
                    .and_then(|j| j.lease.as_ref())
                    .is_some_and(|(holder, _)| holder == worker);
                if !held {
                    continue;
                }
                let Some(mut job) = s.release_lease(id) else {
                    continue;
                };
                job.lease = None;
                match settlement {
                    Settlement::Completed => {
                        s.runs.forget(id);
                        s.flow.remove(id, &job.new);
                    }
                    Settlement::Retry {
                        run_at_ms,
                        error: _,
                    } => {
                        job.new.run_at_ms = run_at_ms;
                        job.new.debounce_key = None;
                        s.jobs.insert(id, job);
                        s.queue(id, now);
                        woke = true;
                    }
                    Settlement::Release { run_at_ms } => {
                        job.attempts = job.attempts.saturating_sub(1);
                        job.new.run_at_ms = run_at_ms;
                        job.new.debounce_key = None;
                        s.jobs.insert(id, job);
                        s.queue(id, now);
                        woke = true;
                    }
                    Settlement::Dead { error } => {
                        s.runs.drop_waits(id);
                        s.flow.remove(id, &job.new);
                        s.dead.push(DeadLetter {
                            id,
                            function_id: job.new.function_id.clone(),
                            event: job.new.event.clone(),
                            attempts: job.attempts,
                            error,
                            failed_at_ms: now,
                        });
                        // Kept for replay, out of every index.
                        s.jobs.insert(id, job);
                    }
                }
            }
        }
        if woke {
            self.wake.notify_waiters();
        }
        Ok(())
    }

    async fn wait_for_work(&self, max_wait: Duration) {
        let next_due = self.lock().scheduled.first().map(|&(at, _)| at);
        let wait = match next_due {
            Some(at) => max_wait.min(Duration::from_millis((at - now_ms()).max(0) as u64)),
            None => max_wait,
        };
        let _ = tokio::time::timeout(wait, self.wake.notified()).await;
    }
}

#[async_trait]
impl QueueAdmin for MemoryQueue {
    async fn stats(&self) -> Result<Vec<FunctionQueueStats>> {
        let now = now_ms();
        let s = self.lock();
        let mut by_fn: HashMap<&str, FunctionQueueStats> = HashMap::new();
        let dead: BTreeSet<JobId> = s.dead.iter().map(|d| d.id).collect();
        for (id, job) in &s.jobs {
            let st = by_fn
                .entry(job.new.function_id.as_str())
                .or_insert_with(|| FunctionQueueStats::new(job.new.function_id.clone()));
            if dead.contains(id) {
                st.dead += 1;
            } else if matches!(&job.lease, Some((_, until)) if *until >= now) {
                st.running += 1;
            } else if job.new.run_at_ms <= now {
                st.ready += 1;
                let age = (now - job.new.run_at_ms).max(0) as u64;
                st.oldest_ready_age_ms = Some(st.oldest_ready_age_ms.map_or(age, |a| a.max(age)));
            } else {
                st.scheduled += 1;
            }
        }
        for (function, dropped) in &s.flow.rate_limited {
            by_fn
                .entry(function.as_str())
                .or_insert_with(|| FunctionQueueStats::new(function.clone()))
                .rate_limited = *dropped;
        }
        let mut out: Vec<_> = by_fn.into_values().collect();
        out.sort_by(|a, b| a.function_id.cmp(&b.function_id));
        Ok(out)
    }

    async fn dead_letters(&self, filter: &JobFilter, limit: usize) -> Result<Vec<DeadLetter>> {
        let s = self.lock();
        Ok(s.dead
            .iter()
            .rev()
            .filter(|d| filter.matches_function(&d.function_id))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn replay(&self, id: JobId) -> Result<()> {
        {
            let mut s = self.lock();
            let Some(pos) = s.dead.iter().position(|d| d.id == id) else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no dead letter with id {id}"),
                ));
            };
            s.revive(pos, now_ms());
        }
        self.wake.notify_waiters();
        self.wake.notify_one();
        Ok(())
    }

    async fn replay_all(&self, filter: &JobFilter) -> Result<u64> {
        let now = now_ms();
        let mut replayed = 0;
        {
            let mut s = self.lock();
            let mut pos = 0;
            while pos < s.dead.len() {
                if filter.matches_function(&s.dead[pos].function_id) {
                    s.revive(pos, now);
                    replayed += 1;
                } else {
                    pos += 1;
                }
            }
        }
        if replayed > 0 {
            self.wake.notify_waiters();
            self.wake.notify_one();
        }
        Ok(replayed)
    }
}
