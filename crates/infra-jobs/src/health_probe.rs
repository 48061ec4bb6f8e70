//! The jobs health probe: a probe event that the built-in probe function completes.
//!
//! The probe sends an event through the runtime's own send path and waits for the built-in
//! function to run it, which proves the queue, a worker and dispatch work together. Each
//! probe waits under a nonce of its own; the event names the worker process that waits. A
//! probe job that another process sharing the queue claims is sent again (a fresh job, woken
//! by the same notification) until the waiting process runs it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use infra_core::{Event, EventSender, Probe, Result};
use tokio::sync::oneshot;

use crate::event_id::new_event_id;
use crate::function::Function;
use crate::outcome::Outcome;
use crate::stats::Totals;

/// The id of the built-in function the health probe runs.
pub const PROBE_FUNCTION_ID: &str = "infra-jobs.health-probe";
/// The event the health probe sends.
pub const PROBE_EVENT_NAME: &str = "infra-jobs/health.probe";

/// Sends a probe event again (through the runtime that owns the probe function).
pub(crate) type Resend = Arc<dyn Fn(Event) -> BoxFuture<'static, Result<String>> + Send + Sync>;

/// The probes of this process waiting for their job to run, by nonce.
#[derive(Default)]
pub(crate) struct ProbeWaiters {
    waiting: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl ProbeWaiters {
    fn wait(&self, nonce: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(nonce.to_owned(), tx);
        rx
    }

    fn forget(&self, nonce: &str) {
        self.lock().remove(nonce);
    }

    fn finish(&self, nonce: &str) {
        if let Some(tx) = self.lock().remove(nonce) {
            let _ = tx.send(());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<()>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The built-in function the health probe runs: it completes the probe of `worker_id`
/// waiting in `waiters`, and passes other processes' probes on with `resend`.
pub(crate) fn probe_function(
    worker_id: Arc<str>,
    waiters: Arc<ProbeWaiters>,
    resend: Resend,
) -> Function {
    Function::builder(PROBE_FUNCTION_ID)
        .name("infra-jobs health probe")
        .on_event(PROBE_EVENT_NAME)
        .retries(0)
        .priority(i32::MAX)
        .timeout(Duration::from_secs(5))
        .raw_handler(move |event: Event, _ctx| {
            let (worker_id, waiters, resend) = (worker_id.clone(), waiters.clone(), resend.clone());
            async move {
                if event.data["worker"].as_str() != Some(&*worker_id) {
                    let again = Event::new(PROBE_EVENT_NAME, event.data.clone());
                    return match resend(again).await {
                        Ok(_) => Outcome::success(),
                        Err(e) => Outcome::fail(format!("cannot pass the probe on: {e}")),
                    };
                }
                if let Some(nonce) = event.data["nonce"].as_str() {
                    waiters.finish(nonce);
                }
                Outcome::success()
            }
        })
        .expect("probe function definition is valid")
}

/// Sends a probe for `worker_id` through `sender` and waits for the probe function to run
/// it; `totals` describes the queue afterwards. Degraded while dead letters exist.
pub(crate) async fn run_probe(
    sender: &dyn EventSender,
    worker_id: &str,
    waiters: &ProbeWaiters,
    totals: impl AsyncFnOnce() -> Result<Totals>,
) -> Result<Probe> {
    let nonce = new_event_id();
    let done = waiters.wait(&nonce);
    let started = Instant::now();
    let sent = sender
        .send(Event::new(
            PROBE_EVENT_NAME,
            serde_json::json!({ "nonce": nonce, "worker": worker_id }),
        ))
        .await;
    if let Err(e) = sent {
        waiters.forget(&nonce);
        return Err(e);
    }
    let _ = done.await;
    let took = started.elapsed();
    let totals = totals().await?;
    let detail = format!(
        "probe job ran in {}; {totals}",
        infra_core::format_duration(took)
    );
    Ok(if totals.dead > 0 {
        Probe::degraded(detail)
    } else {
        Probe::healthy(detail)
    })
}
