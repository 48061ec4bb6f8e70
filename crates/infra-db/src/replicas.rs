//! Read replicas: round robin, skipping replicas that just failed. A `Database` owns them
//! beside its primary's pool and falls back to the primary when none answers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use infra_core::{Result, redact_url};

use crate::config::DbConfig;
use crate::connection_manager::{Pool, PooledConnection, build_pool, checkout};

/// How long a replica that failed a checkout is left out.
const COOL_DOWN: Duration = Duration::from_secs(10);

struct Replica {
    pool: Pool,
    label: String,
    down_until: Mutex<Option<Instant>>,
}

/// The replica pools of a `Database`.
pub(crate) struct Replicas {
    list: Vec<Replica>,
    next: AtomicUsize,
    checkout_timeout: Duration,
}

impl Replicas {
    pub(crate) fn new(config: &DbConfig) -> Result<Self> {
        let list = config
            .replica_urls
            .iter()
            .map(|url| {
                Ok(Replica {
                    pool: build_pool(url.expose(), config)?,
                    label: redact_url(url.expose()),
                    down_until: Mutex::new(None),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Replicas {
            list,
            next: AtomicUsize::new(0),
            // A replica is an optimisation: don't make readers wait long for a bad one.
            checkout_timeout: config.acquire_timeout.min(Duration::from_secs(2)),
        })
    }

    /// Closes replica connections idle longer than `idle`.
    pub(crate) fn retain_idle(&self, idle: Duration) {
        for replica in &self.list {
            replica.pool.retain(|_, metrics| metrics.last_used() < idle);
        }
    }

    /// How many replicas are in rotation and how many are left out after a failure.
    pub(crate) fn health(&self) -> (usize, usize) {
        let now = Instant::now();
        let down = self
            .list
            .iter()
            .filter(|r| {
                r.down_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some_and(|until| until > now)
            })
            .count();
        (self.list.len() - down, down)
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// A connection to the next healthy replica, or `None` when none answers.
    pub(crate) async fn checkout(&self) -> Option<PooledConnection> {
        let n = self.list.len();
        for _ in 0..n {
            let replica = &self.list[self.next.fetch_add(1, Ordering::Relaxed) % n];
            let now = Instant::now();
            {
                let down = replica.down_until.lock().unwrap_or_else(|e| e.into_inner());
                if down.is_some_and(|until| until > now) {
                    continue;
                }
            }
            match tokio::time::timeout(self.checkout_timeout, checkout(&replica.pool)).await {
                Ok(Ok(conn)) => return Some(conn),
                outcome => {
                    let why = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        _ => "checkout timed out".to_owned(),
                    };
                    tracing::warn!(replica = %replica.label, error = %why, "read replica left out for {COOL_DOWN:?}");
                    *replica.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(now + COOL_DOWN);
                }
            }
        }
        None
    }
}
