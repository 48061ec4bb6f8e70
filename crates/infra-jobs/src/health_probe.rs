//! The jobs health check: a probe job the built-in probe function completes.

use std::sync::Weak;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use infra_core::{Event, EventSender, HealthCheck, Probe, Result};
use tokio::sync::oneshot;

use crate::event_id::new_event_id;
use crate::function::Function;
use crate::outcome::Outcome;
use crate::runtime::{Delivery, Inner, JobsRuntime};
use crate::stats::Totals;

/// The id of the built-in function the health probe runs.
pub const PROBE_FUNCTION_ID: &str = "infra-jobs.health-probe";
/// The event the health probe sends.
pub const PROBE_EVENT_NAME: &str = "infra-jobs/health.probe";

/// The built-in function the health probe runs: it completes the waiting probe. A probe job
/// that another process sharing the queue claims is sent again (a fresh job, woken by the
/// same notification), until the process that waits for it runs it.
pub(crate) fn probe_function(runtime: Weak<Inner>) -> Function {
    Function::builder(PROBE_FUNCTION_ID)
        .name("infra-jobs health probe")
        .on_event(PROBE_EVENT_NAME)
        .retries(0)
        .priority(i32::MAX)
        .timeout(Duration::from_secs(5))
        .raw_handler(move |event: Event, _ctx| {
            let runtime = runtime.clone();
            async move {
                let Some(inner) = runtime.upgrade() else {
                    return Outcome::success();
                };
                let runtime = JobsRuntime { inner };
                if event.data["worker"].as_str() != Some(runtime.worker_id()) {
                    let again = Event::new(PROBE_EVENT_NAME, event.data.clone());
                    return match runtime.send(again).await {
                        Ok(_) => Outcome::success(),
                        Err(e) => Outcome::fail(format!("cannot pass the probe on: {e}")),
                    };
                }
                if let Some(nonce) = event.data["nonce"].as_str() {
                    runtime.finish_probe(nonce);
                }
                Outcome::success()
            }
        })
        .expect("probe function definition is valid")
}

impl JobsRuntime {
    /// Wakes the health probe waiting for `nonce`.
    fn finish_probe(&self, nonce: &str) {
        if let Some(tx) = self
            .inner
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(nonce)
        {
            let _ = tx.send(());
        }
    }

    async fn totals(&self) -> Result<Totals> {
        Ok(Totals::of(&self.stats().await?))
    }
}

#[async_trait]
impl HealthCheck for JobsRuntime {
    fn service(&self) -> &str {
        "jobs"
    }
    fn backend(&self) -> &str {
        JobsRuntime::backend(self)
    }
    /// Memory and PostgreSQL: sends a probe event and waits for the built-in probe function
    /// to run it (so the queue, a worker and the dispatch path all work). Inngest: checks
    /// the key without creating events.
    async fn probe(&self) -> Result<Probe> {
        if let Delivery::Forward { health, .. } = &self.inner.delivery {
            return health.probe().await;
        }
        let running = self
            .inner
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
            && !self.inner.shutdown.is_cancelled();
        if !running {
            // No worker here to run a probe job: prove the queue answers instead. On
            // PostgreSQL other processes may be the workers; in memory nothing will run.
            let totals = self.totals().await?;
            let detail = format!("workers not started in this process; {totals}");
            return Ok(if self.backend() == "memory" {
                Probe::degraded(detail)
            } else {
                Probe::healthy(detail)
            });
        }
        let nonce = new_event_id();
        let (tx, rx) = oneshot::channel();
        self.inner
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(nonce.clone(), tx);
        let started = Instant::now();
        let sent = self
            .send(Event::new(
                PROBE_EVENT_NAME,
                serde_json::json!({ "nonce": nonce, "worker": self.inner.worker_id }),
            ))
            .await;
        if let Err(e) = sent {
            self.inner
                .probes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&nonce);
            return Err(e);
        }
        let _ = rx.await;
        let took = started.elapsed();
        let totals = self.totals().await?;
        let detail = format!(
            "probe job ran in {}; {totals}",
            infra_core::format_duration(took)
        );
        let dead = totals.dead;
        if dead > 0 {
            Ok(Probe::degraded(detail))
        } else {
            Ok(Probe::healthy(detail))
        }
    }
    /// Whether this process's workers run, from local state: no probe job, no queue query
    /// (the database's own readiness covers PostgreSQL), no call to Inngest.
    async fn ping(&self) -> Result<Probe> {
        if let Delivery::Forward { health, .. } = &self.inner.delivery {
            return health.ping().await;
        }
        let running = self
            .inner
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
            && !self.inner.shutdown.is_cancelled();
        Ok(match (running, self.backend()) {
            (true, _) => Probe::healthy("workers running"),
            (false, "memory") => Probe::degraded("workers not started in this process"),
            (false, _) => Probe::healthy("workers not started in this process"),
        })
    }
}
