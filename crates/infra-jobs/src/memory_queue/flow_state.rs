//! The in-process queue's flow control: GCRA times of throttles and rate limits, the live
//! job of each singleton key, the live jobs of each ordering key, the open batch of each
//! batch key, and the events rate limits dropped.
//!
//! Invariants: an ordering key's set holds exactly its live jobs (queued, parked or running,
//! not dead letters); a singleton or batch entry names a job that exists, or is removed when
//! that job leaves.

use std::collections::{BTreeSet, HashMap};

use infra_core::{JobId, JobRateLimit, JobThrottle, NewJob};

type Key = (String, String);

#[derive(Default)]
pub(super) struct FlowState {
    throttles: HashMap<Key, i64>,
    rates: HashMap<Key, i64>,
    pub(super) rate_limited: HashMap<String, u64>,
    pub(super) singletons: HashMap<Key, JobId>,
    ordering: HashMap<Key, BTreeSet<JobId>>,
    pub(super) batches: HashMap<Key, JobId>,
}

/// GCRA's emission interval: the period shared by the limit.
fn interval(period_ms: i64, limit: u32) -> i64 {
    (period_ms / i64::from(limit.max(1))).max(1)
}

impl FlowState {
    /// When a throttled run of `function` may start (and reserves that start): `burst` runs
    /// start at once, then one per `period / limit`.
    pub(super) fn throttle_start(&mut self, function: &str, t: &JobThrottle, now: i64) -> i64 {
        let step = interval(t.period_ms, t.limit);
        let tat = self
            .throttles
            .entry((function.to_owned(), t.key.clone()))
            .or_insert(now);
        let x = (*tat).max(now);
        *tat = x.saturating_add(step);
        now.max(x - i64::from(t.burst.max(1) - 1).saturating_mul(step))
    }

    /// Whether a rate-limited run of `function` may run now (and counts it); a refused one is
    /// counted as dropped.
    pub(super) fn rate_allows(&mut self, function: &str, r: &JobRateLimit, now: i64) -> bool {
        let step = interval(r.period_ms, r.limit);
        let tat = self
            .rates
            .entry((function.to_owned(), r.key.clone()))
            .or_insert(now);
        let next = (*tat).max(now).saturating_add(step);
        if next - now <= r.period_ms {
            *tat = next;
            true
        } else {
            *self.rate_limited.entry(function.to_owned()).or_default() += 1;
            false
        }
    }

    /// Registers a new live job's keys.
    pub(super) fn add(&mut self, id: JobId, job: &NewJob) {
        if let Some(key) = &job.ordering_key {
            self.ordering
                .entry((job.function_id.clone(), key.clone()))
                .or_default()
                .insert(id);
        }
        if let Some(single) = &job.singleton {
            self.singletons
                .insert((job.function_id.clone(), single.key.clone()), id);
        }
        if let Some(batch) = &job.batch {
            self.batches
                .insert((job.function_id.clone(), batch.key.clone()), id);
        }
    }

    /// Whether job `id` is the earliest live job of its ordering key (or has none).
    pub(super) fn is_next_in_order(&self, id: JobId, job: &NewJob) -> bool {
        let Some(key) = &job.ordering_key else {
            return true;
        };
        self.ordering
            .get(&(job.function_id.clone(), key.clone()))
            .and_then(|set| set.first())
            .is_none_or(|first| *first == id)
    }

    /// Forgets job `id`, which left the queue or became a dead letter.
    pub(super) fn remove(&mut self, id: JobId, job: &NewJob) {
        if let Some(key) = &job.ordering_key {
            let k = (job.function_id.clone(), key.clone());
            if let Some(set) = self.ordering.get_mut(&k) {
                set.remove(&id);
                if set.is_empty() {
                    self.ordering.remove(&k);
                }
            }
        }
        if let Some(single) = &job.singleton {
            let k = (job.function_id.clone(), single.key.clone());
            if self.singletons.get(&k) == Some(&id) {
                self.singletons.remove(&k);
            }
        }
        self.close_batch(id, job);
    }

    /// Stops the job `id` from taking more events into its batch.
    pub(super) fn close_batch(&mut self, id: JobId, job: &NewJob) {
        if let Some(batch) = &job.batch {
            let k = (job.function_id.clone(), batch.key.clone());
            if self.batches.get(&k) == Some(&id) {
                self.batches.remove(&k);
            }
        }
    }
}
