//! How a runtime's workers claim and run jobs.

use std::time::Duration;

use infra_core::{Env, Error, Result};

/// Worker settings; the defaults suit a web app's background work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerSettings {
    /// Jobs this process runs at once (`INFRA_JOBS_CONCURRENCY`, default 32).
    pub concurrency: usize,
    /// Most jobs claimed in one round trip (default 100).
    pub claim_batch: usize,
    /// How long a claim holds a job before another worker may take it over
    /// (`INFRA_JOBS_LEASE`, default 30s). Heartbeats extend it while the job runs.
    pub lease: Duration,
    /// How often held leases are extended (a third of the lease).
    pub heartbeat: Duration,
    /// How long an idle worker waits for a wake-up before looking anyway
    /// (`INFRA_JOBS_POLL_INTERVAL`, default 1s).
    pub poll_interval: Duration,
    /// How long `shutdown` waits for running jobs.
    pub shutdown_grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 32,
            claim_batch: 100,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl WorkerSettings {
    /// The defaults overridden by `INFRA_JOBS_CONCURRENCY`, `INFRA_JOBS_LEASE` and
    /// `INFRA_JOBS_POLL_INTERVAL`.
    pub fn from_env(env: &Env) -> Result<Self> {
        let mut s = WorkerSettings::default();
        if let Some(n) = env.integer::<usize>("INFRA_JOBS_CONCURRENCY")? {
            if n == 0 {
                return Err(Error::config(
                    "INFRA_JOBS_CONCURRENCY",
                    "must be at least 1",
                ));
            }
            s.concurrency = n;
        }
        if let Some(lease) = env.duration("INFRA_JOBS_LEASE")? {
            if lease < Duration::from_millis(100) {
                return Err(Error::config("INFRA_JOBS_LEASE", "must be at least 100ms"));
            }
            s = s.with_lease(lease);
        }
        if let Some(poll) = env.duration("INFRA_JOBS_POLL_INTERVAL")? {
            if poll.is_zero() {
                return Err(Error::config(
                    "INFRA_JOBS_POLL_INTERVAL",
                    "must be above zero",
                ));
            }
            s.poll_interval = poll;
        }
        Ok(s)
    }

    /// Sets how many jobs run at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets the claim batch size.
    pub fn with_claim_batch(mut self, n: usize) -> Self {
        self.claim_batch = n.max(1);
        self
    }

    /// Sets the lease, and the heartbeat to a third of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat = lease / 3;
        self
    }

    /// Sets the poll interval.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll_interval = poll;
        self
    }
}
