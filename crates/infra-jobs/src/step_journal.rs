//! The queue driver's access to a [`StepStore`]: a worker's concurrent runs load and record
//! their steps through it, and it groups what they ask for into one store call per batch
//! (group commit), as the worker's settlements are.
//!
//! Invariants: a caller's record returns only once its batch is written (a recorded step is
//! durable before the run goes on); a failed batch fails each of its callers, who retry their
//! runs; every call of one batch is for this worker.

use std::future::Future;
use std::sync::Arc;

use infra_core::{Error, FinishedStep, JobId, ParkedRun, Result, StepStore, StoredStep};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Most requests in one store call.
const BATCH: usize = 1_000;

type Request<Req, Resp> = (Req, oneshot::Sender<Result<Resp>>);

/// A worker's batched access to its queue's step store.
pub(crate) struct StepJournal {
    store: Arc<dyn StepStore>,
    loads: mpsc::UnboundedSender<Request<JobId, Vec<StoredStep>>>,
    saves: mpsc::UnboundedSender<Request<FinishedStep, bool>>,
    parks: mpsc::UnboundedSender<Request<ParkedRun, bool>>,
}

impl StepJournal {
    /// A journal of `worker` on `store`; its batching tasks end when it is dropped.
    pub(crate) fn new(store: Arc<dyn StepStore>, worker: Arc<str>) -> Self {
        let loads = {
            let store = store.clone();
            spawn_batcher(move |jobs: Vec<JobId>| {
                let store = store.clone();
                async move {
                    let rows = store.load_steps(&jobs).await?;
                    Ok(jobs
                        .iter()
                        .map(|j| rows.iter().filter(|r| r.job_id == *j).cloned().collect())
                        .collect())
                }
            })
        };
        let saves = {
            let (store, worker) = (store.clone(), worker.clone());
            spawn_batcher(move |steps: Vec<FinishedStep>| {
                let (store, worker) = (store.clone(), worker.clone());
                async move { store.save_steps(&worker, steps).await }
            })
        };
        let parks = {
            let (store, worker) = (store.clone(), worker.clone());
            spawn_batcher(move |runs: Vec<ParkedRun>| {
                let (store, worker) = (store.clone(), worker.clone());
                async move { store.park(&worker, runs).await }
            })
        };
        StepJournal {
            store,
            loads,
            saves,
            parks,
        }
    }

    /// The recorded steps of `job`.
    pub(crate) async fn load(&self, job: JobId) -> Result<Vec<StoredStep>> {
        call(&self.loads, job).await
    }

    /// Records a finished step; `false` when the run is no longer this worker's.
    pub(crate) async fn save(&self, step: FinishedStep) -> Result<bool> {
        call(&self.saves, step).await
    }

    /// Parks a run; `false` when it is no longer this worker's.
    pub(crate) async fn park(&self, run: ParkedRun) -> Result<bool> {
        call(&self.parks, run).await
    }

    /// Ends a timed-out wait (rare: not batched).
    pub(crate) async fn expire_wait(&self, job: JobId, step_id: &str) -> Result<Option<Value>> {
        self.store.expire_wait(job, step_id).await
    }
}

async fn call<Req, Resp>(tx: &mpsc::UnboundedSender<Request<Req, Resp>>, req: Req) -> Result<Resp> {
    let (reply, rx) = oneshot::channel();
    tx.send((req, reply))
        .map_err(|_| Error::unavailable("the step journal stopped"))?;
    rx.await
        .map_err(|_| Error::unavailable("the step journal stopped"))?
}

/// A task answering requests in batches with `f`, which returns one response per request,
/// in order.
fn spawn_batcher<Req, Resp, F, Fut>(f: F) -> mpsc::UnboundedSender<Request<Req, Resp>>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Vec<Req>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<Resp>>> + Send,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Request<Req, Resp>>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let (requests, replies): (Vec<Req>, Vec<_>) = batch.into_iter().unzip();
            match f(requests).await {
                Ok(responses) if responses.len() == replies.len() => {
                    for (reply, response) in replies.into_iter().zip(responses) {
                        let _ = reply.send(Ok(response));
                    }
                }
                Ok(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(Error::backend(
                            "the step store answered a batch with the wrong number of results",
                        )));
                    }
                }
                Err(err) => {
                    for reply in replies {
                        let _ = reply.send(Err(Error::new(err.kind(), err.message().to_owned())));
                    }
                }
            }
        }
    });
    tx
}
