//! What `JobsRuntime::stats` reports: queue state and run counters per function.
//!
//! The counters are this process's since its runtime was built ([`RunTally`], shared by the
//! workers and the invoke path); the queue state is the queue's, across every process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infra_core::FunctionQueueStats;
use serde::Serialize;

use crate::job_metrics::FunctionMetrics;

/// Counters of one function since this runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunCounters {
    /// Attempts started.
    pub attempts: u64,
    /// Attempts that succeeded.
    pub successes: u64,
    /// Attempts that failed (retried or not).
    pub failures: u64,
    /// Runs that became dead letters.
    pub dead_lettered: u64,
}

/// The run counters of every function, recorded as attempts end.
#[derive(Default)]
pub(crate) struct RunTally {
    by_function: Mutex<HashMap<String, (RunCounters, Arc<FunctionMetrics>)>>,
}

impl RunTally {
    /// Counts one attempt of `function_id`; `dead` when it made the run a dead letter.
    pub(crate) fn record(&self, function_id: &str, succeeded: bool, dead: bool) {
        let mut counters = self.by_function.lock().unwrap_or_else(|e| e.into_inner());
        let (c, metrics) = Self::entry(&mut counters, function_id);
        metrics.attempt(succeeded, dead);
        c.attempts += 1;
        if succeeded {
            c.successes += 1;
        } else {
            c.failures += 1;
        }
        if dead {
            c.dead_lettered += 1;
        }
    }

    /// The metric handles of `function_id`, registered on its first use.
    pub(crate) fn metrics(&self, function_id: &str) -> Arc<FunctionMetrics> {
        let mut counters = self.by_function.lock().unwrap_or_else(|e| e.into_inner());
        Self::entry(&mut counters, function_id).1.clone()
    }

    fn entry<'m>(
        map: &'m mut HashMap<String, (RunCounters, Arc<FunctionMetrics>)>,
        function_id: &str,
    ) -> &'m mut (RunCounters, Arc<FunctionMetrics>) {
        // Looked up by `&str` first: the id is copied only on a function's first attempt.
        if !map.contains_key(function_id) {
            map.insert(
                function_id.to_owned(),
                (
                    RunCounters::default(),
                    Arc::new(FunctionMetrics::new(function_id)),
                ),
            );
        }
        map.get_mut(function_id).expect("inserted above")
    }

    /// The counters so far.
    pub(crate) fn snapshot(&self) -> HashMap<String, RunCounters> {
        self.by_function
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, (counters, _))| (id.clone(), *counters))
            .collect()
    }
}

/// One function's queue state and counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionStats {
    /// The queue's view (waiting, scheduled, running, dead, oldest waiting age).
    #[serde(flatten)]
    pub queue: FunctionQueueStats,
    /// This process's counters.
    pub runs: RunCounters,
}

/// What [`JobsRuntime::stats`](crate::JobsRuntime::stats) reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobsStats {
    /// `memory`, `postgres` or `inngest`.
    pub backend: &'static str,
    /// Per function, by id.
    pub functions: Vec<FunctionStats>,
}

impl JobsStats {
    /// The stats of one function.
    pub fn function(&self, id: &str) -> Option<&FunctionStats> {
        self.functions.iter().find(|f| f.queue.function_id == id)
    }
}

/// Queue totals over every function, for the health detail.
pub(crate) struct Totals {
    pub(crate) ready: u64,
    pub(crate) scheduled: u64,
    pub(crate) running: u64,
    pub(crate) dead: u64,
    pub(crate) oldest_ready_ms: u64,
}

impl Totals {
    /// Sums `stats` over its functions.
    pub(crate) fn of(stats: &JobsStats) -> Totals {
        let mut t = Totals {
            ready: 0,
            scheduled: 0,
            running: 0,
            dead: 0,
            oldest_ready_ms: 0,
        };
        for f in &stats.functions {
            t.ready += f.queue.ready;
            t.scheduled += f.queue.scheduled;
            t.running += f.queue.running;
            t.dead += f.queue.dead;
            t.oldest_ready_ms = t
                .oldest_ready_ms
                .max(f.queue.oldest_ready_age_ms.unwrap_or(0));
        }
        t
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ready {}, scheduled {}, running {}, dead {}, oldest ready {}",
            self.ready,
            self.scheduled,
            self.running,
            self.dead,
            infra_core::format_duration(Duration::from_millis(self.oldest_ready_ms))
        )
    }
}
