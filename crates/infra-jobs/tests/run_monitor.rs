//! What the PostgreSQL queue's workers tell a `RunMonitor`: the trace an event was sent in
//! survives the queue (jsonb) and starts the run's span; a cron fire checks in once open
//! per attempt and closes when it is over (ok, or error once dead).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use infra_core::{
    Backoff, CheckInStatus, CronCheckIn, Event, EventSender, RunFuture, RunMonitor, RunSpan,
    RunStart, RunStatus, TraceContext,
};
use infra_jobs::{Function, JobContext, JobsRuntime, Outcome, PgQueue, WorkerSettings};
use serde_json::json;

/// The request span events are "sent in".
fn request_trace() -> TraceContext {
    TraceContext::new(
        "771a43a4192642f0b136d5159a501700",
        "b0e6f15b45c36b12",
        Some(true),
    )
}

#[derive(Default)]
struct Recorded {
    runs: Vec<(String, Option<TraceContext>)>,
    finished: Vec<(String, RunStatus)>,
    check_ins: Vec<CronCheckIn>,
}

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Recorded>>);

struct Span {
    function: String,
    recorder: Recorder,
}

impl RunSpan for Span {
    fn instrument<'a>(&self, body: RunFuture<'a>) -> RunFuture<'a> {
        body
    }
    fn in_scope(&self, f: &mut dyn FnMut()) {
        f()
    }
    fn finish(self: Box<Self>, status: RunStatus) {
        let mut r = self.recorder.0.lock().unwrap();
        r.finished.push((self.function, status));
    }
}

impl RunMonitor for Recorder {
    fn current_trace(&self) -> Option<TraceContext> {
        Some(request_trace())
    }
    fn start_run(&self, run: &RunStart<'_>) -> Box<dyn RunSpan> {
        self.0
            .lock()
            .unwrap()
            .runs
            .push((run.function_id.to_owned(), run.trace.cloned()));
        Box::new(Span {
            function: run.function_id.to_owned(),
            recorder: self.clone(),
        })
    }
    fn check_in(&self, check_in: &CronCheckIn) {
        self.0.lock().unwrap().check_ins.push(check_in.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_cross_the_postgres_queue_and_cron_fires_check_in() {
    let db = support::TestDb::create("run_monitor").await;
    let jobs = JobsRuntime::with_settings(
        Arc::new(PgQueue::new(db.database())),
        Default::default(),
        WorkerSettings::default().with_poll_interval(Duration::from_millis(50)),
    );
    let recorder = Recorder::default();
    jobs.set_monitor(Arc::new(recorder.clone()));
    let seen: Arc<Mutex<Vec<Option<TraceContext>>>> = Arc::default();
    jobs.register(
        Function::builder("sync-calendar")
            .on_event("calendar/sync.requested")
            .with_state(seen.clone())
            .raw_handler(
                |event: Event, ctx: JobContext<Arc<Mutex<Vec<Option<TraceContext>>>>>| async move {
                    ctx.state().lock().unwrap().push(event.trace);
                    Outcome::success()
                },
            )
            .unwrap(),
    )
    .unwrap();
    jobs.register(
        Function::builder("flaky-digest")
            .on_cron("* * * * * *")
            .retries(1)
            .backoff(Backoff::new(
                Duration::from_millis(10),
                Duration::from_millis(10),
            ))
            .raw_handler(|_: Event, _: JobContext| async {
                Outcome::retry("the digest API is down")
            })
            .unwrap(),
    )
    .unwrap();
    jobs.start().await.unwrap();

    // Sent "inside the request": the monitor's current trace goes into the event; an event
    // that already carries one keeps it.
    let own = TraceContext::new("0af7651916cd43dd8448eb211c80319c", "00f067aa0ba902b7", None);
    jobs.send(Event::new("calendar/sync.requested", json!({ "n": 1 })))
        .await
        .unwrap();
    jobs.send(Event::new("calendar/sync.requested", json!({ "n": 2 })).with_trace(own.clone()))
        .await
        .unwrap();

    let dead_fire = |r: &Recorded| {
        r.check_ins
            .iter()
            .find(|c| c.status == CheckInStatus::Error)
            .map(|c| c.fire_key.clone())
    };
    for _ in 0..600 {
        let done =
            seen.lock().unwrap().len() == 2 && dead_fire(&recorder.0.lock().unwrap()).is_some();
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    jobs.shutdown().await;

    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|t| t.as_ref().map(|t| t.trace_id.clone()));
    assert_eq!(seen, [Some(own.clone()), Some(request_trace())]);

    let recorded = recorder.0.lock().unwrap();
    let mut run_traces: Vec<Option<TraceContext>> = recorded
        .runs
        .iter()
        .filter(|(f, _)| f == "sync-calendar")
        .map(|(_, t)| t.clone())
        .collect();
    run_traces.sort_by_key(|t| t.as_ref().map(|t| t.trace_id.clone()));
    assert_eq!(
        run_traces,
        [Some(own), Some(request_trace())],
        "the spans continue them"
    );
    assert_eq!(
        recorded
            .finished
            .iter()
            .filter(|(f, s)| f == "sync-calendar" && *s == RunStatus::Completed)
            .count(),
        2
    );

    // The first fire that died: opened by each of its two attempts, closed once, as an
    // error with its duration; the retry in between closed nothing.
    let fire = dead_fire(&recorded).expect("a fire died");
    let statuses: Vec<CheckInStatus> = recorded
        .check_ins
        .iter()
        .filter(|c| c.fire_key == fire)
        .map(|c| c.status)
        .collect();
    assert_eq!(
        statuses,
        [
            CheckInStatus::InProgress,
            CheckInStatus::InProgress,
            CheckInStatus::Error
        ]
    );
    let closing = recorded
        .check_ins
        .iter()
        .find(|c| c.fire_key == fire && c.status == CheckInStatus::Error)
        .unwrap();
    assert!(closing.duration.is_some());
    assert_eq!(closing.schedule, "* * * * * *");
    assert_eq!(closing.function_id, "flaky-digest");
    assert!(
        recorded
            .finished
            .iter()
            .any(|(f, s)| f == "flaky-digest" && *s == RunStatus::Retrying)
    );
}
