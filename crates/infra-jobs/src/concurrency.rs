//! In-process concurrency limits per function, global and per key.
//!
//! Invariants: a run holds one permit of every limit that applies to its event for its whole
//! attempt, so no limit is exceeded inside this process; a limit whose key the event lacks
//! does not apply. Semaphores are made per (function, limit, key value) on first use, and
//! idle ones are dropped once more than 10,000 exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use infra_core::Event;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::function::Function;

/// One semaphore per (function, limit, key value), made on first use.
#[derive(Default)]
pub(crate) struct ConcurrencyLimiter {
    semaphores: Mutex<HashMap<(String, usize, String), Arc<Semaphore>>>,
}

impl ConcurrencyLimiter {
    /// Waits until every limit of `function` admits a run on `event`; the permits free the
    /// slots when dropped.
    pub(crate) async fn acquire(
        &self,
        function: &Function,
        event: &Event,
    ) -> Vec<OwnedSemaphorePermit> {
        let mut permits = Vec::new();
        for (index, limit) in function.options().concurrency.iter().enumerate() {
            let key = match &limit.key {
                None => String::new(),
                // No key value: this limit does not apply to the event.
                Some(k) => match k.evaluate(event) {
                    Some(v) => v,
                    None => continue,
                },
            };
            let semaphore = {
                let mut map = self.semaphores.lock().unwrap_or_else(|e| e.into_inner());
                if map.len() > 10_000 {
                    // Drop idle keys' semaphores (all permits free, nobody else holds one).
                    map.retain(|_, s| Arc::strong_count(s) > 1);
                }
                map.entry((function.id().to_owned(), index, key))
                    .or_insert_with(|| Arc::new(Semaphore::new(limit.limit as usize)))
                    .clone()
            };
            // Never closed, so acquiring only fails if the semaphore were closed.
            let permit = match semaphore.clone().try_acquire_owned() {
                Ok(p) => Ok(p),
                Err(_) => {
                    crate::job_metrics::count_concurrency_wait(function.id());
                    semaphore.acquire_owned().await
                }
            };
            if let Ok(p) = permit {
                permits.push(p);
            }
        }
        permits
    }
}
