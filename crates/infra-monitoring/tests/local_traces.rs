//! The local sink records what Sentry would receive: a job run's transaction continuing
//! the trace of the run that sent its event, and a cron fire's check-ins, as JSON lines.

use std::sync::Arc;
use std::time::Duration;

use infra_core::{Env, Event, EventSender};
use infra_jobs::{Function, JobContext, JobsRuntime, MemoryQueue, Outcome, WorkerSettings};
use infra_monitoring::Monitoring;
use serde_json::{Value, json};

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn run_line<'a>(lines: &'a [Value], function: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|l| l["type"] == "transaction" && l["op"] == "queue.process" && l["name"] == function)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_cron_check_ins_are_json_lines_of_one_trace() {
    let log = std::env::temp_dir().join(format!("infra-local-traces-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let env = Env::from_pairs([
        ("INFRA_MONITORING_LOG_FILE", log.to_str().unwrap()),
        ("SENTRY_ENVIRONMENT", "dev"),
        ("SENTRY_TRACES_SAMPLE_RATE", "1"),
    ]);
    let monitoring = Monitoring::from_env(&env).unwrap();
    assert_eq!(monitoring.backend(), "local");
    let jobs = JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        Default::default(),
        WorkerSettings::default().with_poll_interval(Duration::from_millis(20)),
    );
    jobs.set_monitor(monitoring.run_monitor());
    // The first run sends the event of the second from inside its body.
    jobs.register(
        Function::builder("fetch-calendar")
            .on_event("calendar/sync.requested")
            .with_state(jobs.clone())
            .raw_handler(|_: Event, ctx: JobContext<JobsRuntime>| async move {
                ctx.state()
                    .send(Event::new(
                        "calendar/fetched",
                        json!({ "calendarId": "cal-1" }),
                    ))
                    .await
                    .unwrap();
                Outcome::success()
            })
            .unwrap(),
    )
    .unwrap();
    jobs.register(
        Function::builder("notify-calendar")
            .on_event("calendar/fetched")
            .raw_handler(|_: Event, _: JobContext| async { Outcome::success() })
            .unwrap(),
    )
    .unwrap();
    jobs.register(
        Function::builder("nightly-digest")
            .on_cron("* * * * * *")
            .raw_handler(|_: Event, _: JobContext| async { Outcome::success() })
            .unwrap(),
    )
    .unwrap();
    jobs.start().await.unwrap();
    jobs.send(Event::new("calendar/sync.requested", json!({})))
        .await
        .unwrap();

    let mut all = Vec::new();
    for _ in 0..300 {
        all = lines(&log);
        let check_in_ok = all
            .iter()
            .any(|l| l["type"] == "check_in" && l["status"] == "ok");
        if run_line(&all, "notify-calendar").is_some() && check_in_ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    jobs.shutdown().await;
    let _ = std::fs::remove_file(&log);

    let fetch = run_line(&all, "fetch-calendar").expect("the first run's line");
    let notify = run_line(&all, "notify-calendar").expect("the second run's line");
    assert_eq!(fetch["status"], "ok");
    assert!(
        fetch["parent_span_id"].is_null(),
        "sent outside any span: a new trace"
    );
    assert_eq!(notify["trace_id"], fetch["trace_id"]);
    assert_eq!(notify["parent_span_id"], fetch["span_id"]);
    assert_eq!(notify["data"]["event.name"], "calendar/fetched");
    assert_eq!(notify["environment"], "dev");
    assert!(notify["duration_ms"].as_f64().is_some());

    let digest: Vec<&Value> = all
        .iter()
        .filter(|l| l["type"] == "check_in" && l["monitor_slug"] == "nightly-digest")
        .collect();
    let ok = digest
        .iter()
        .find(|c| c["status"] == "ok")
        .expect("an ok check-in");
    assert!(ok["duration"].as_f64().is_some());
    assert_eq!(ok["monitor_config"]["schedule"]["value"], "* * * * *");
    assert!(
        digest
            .iter()
            .any(|c| c["status"] == "in_progress" && c["check_in_id"] == ok["check_in_id"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_runs_pass_their_trace_on_but_write_no_line() {
    let log = std::env::temp_dir().join(format!(
        "infra-local-unsampled-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&log);
    // SENTRY_TRACES_SAMPLE_RATE defaults to 0: no transaction is written, as none is sent.
    let env = Env::from_pairs([("INFRA_MONITORING_LOG_FILE", log.to_str().unwrap())]);
    let monitoring = Monitoring::from_env(&env).unwrap();
    let jobs = JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        Default::default(),
        WorkerSettings::default().with_poll_interval(Duration::from_millis(20)),
    );
    jobs.set_monitor(monitoring.run_monitor());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    jobs.register(
        Function::builder("fetch-calendar")
            .on_event("calendar/sync.requested")
            .with_state(jobs.clone())
            .raw_handler(|_: Event, ctx: JobContext<JobsRuntime>| async move {
                ctx.state()
                    .send(Event::new("calendar/fetched", json!({})))
                    .await
                    .unwrap();
                Outcome::success()
            })
            .unwrap(),
    )
    .unwrap();
    jobs.register(
        Function::builder("notify-calendar")
            .on_event("calendar/fetched")
            .with_state(tx)
            .raw_handler(
                |event: Event, ctx: JobContext<tokio::sync::mpsc::UnboundedSender<Event>>| async move {
                    ctx.state().send(event).unwrap();
                    Outcome::success()
                },
            )
            .unwrap(),
    )
    .unwrap();
    jobs.start().await.unwrap();
    jobs.send(Event::new("calendar/sync.requested", json!({})))
        .await
        .unwrap();
    let fetched = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the second run ran")
        .unwrap();
    jobs.shutdown().await;
    let written = lines(&log);
    let _ = std::fs::remove_file(&log);
    let trace = fetched.trace.expect("the run passed its trace on");
    assert!(trace.is_well_formed());
    assert_eq!(trace.sampled, Some(false));
    assert!(
        !written.iter().any(|l| l["type"] == "transaction"),
        "{written:?}"
    );
}
