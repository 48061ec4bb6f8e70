//! Steps served to Inngest: the same step function written with the official `inngest` npm
//! SDK (served by `tests/compat/inngest_steps.js`) and with ours, sent the same sequence of
//! executor call requests, must answer the same status codes, opcodes, step ids, names,
//! options and data. The executor is simulated as Inngest's runs it: each reported step's
//! result is memoized into the next request's `steps` (SDK spec §5), a planned step is run
//! by a request naming it in `stepId`.
//!
//! Needs Node and `npm ci` in `tests/compat` (`cargo xtask ci` does it); fails, never skips,
//! without.
#![cfg(feature = "serve")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::routing::post;
use infra_core::{Error, Event};
use infra_jobs::{
    Function, InngestClient, InngestConfig, JobContext, JobsRuntime, Match, ServeConfig, ServeMode,
    serve_router,
};
use serde_json::{Value, json};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The official SDK's server; returns its base URL.
fn start_official(event_api: &str) -> (Node, String) {
    use std::io::{BufRead, BufReader};
    let compat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    assert!(
        compat.join("node_modules/inngest").exists(),
        "run `npm ci` in {} first (cargo xtask ci does)",
        compat.display()
    );
    let mut child = Command::new("node")
        .arg(compat.join("inngest_steps.js"))
        .arg(event_api)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = serde_json::from_str::<Value>(&line).unwrap()["port"]
        .as_u64()
        .unwrap();
    (Node(child), format!("http://127.0.0.1:{port}/"))
}

/// The same function as `inngest_steps.js`'s, written with infra-jobs.
fn steps_function() -> Function {
    Function::builder("steps")
        .on_event("t/steps")
        .retries(2)
        .raw_handler(|event: Event, ctx: JobContext| async move {
            let step = ctx.step();
            let n = event.data["n"].clone();
            let fail = event.data["fail"].as_bool().unwrap_or(false);
            let fetched: Value = step
                .run("fetch", || async { Ok::<_, Error>(json!({ "n": n })) })
                .await?;
            let mut looped = Vec::new();
            for i in 0..2i64 {
                let v: i64 = step
                    .run("loop", || async move { Ok::<_, Error>(i * 10) })
                    .await?;
                looped.push(v);
            }
            step.sleep("nap", Duration::from_secs(5)).await?;
            step.sleep_until(
                "until",
                UNIX_EPOCH + Duration::from_millis(1_900_000_000_000),
            )
            .await?;
            let paid = step
                .wait_for_event(
                    "paid",
                    "t/paid",
                    Match::field("data.userId"),
                    Duration::from_secs(3600),
                )
                .await?;
            let done = step
                .wait_for_event(
                    "done",
                    "t/done",
                    Match::expression("async.data.ok == true"),
                    Duration::from_secs(1800),
                )
                .await?;
            let invoked: Value = step
                .invoke("call", "other", json!({ "x": 1 }), Duration::from_secs(60))
                .await?;
            let ids = step
                .send_event(
                    "notify",
                    vec![
                        Event::new("t/notified", json!({ "n": event.data["n"] }))
                            .with_id("fixed-id"),
                    ],
                )
                .await?;
            let flaky: i64 = step
                .run("flaky", || async {
                    if fail {
                        Err(Error::backend("boom"))
                    } else {
                        Ok(1)
                    }
                })
                .await?;
            Ok::<_, Error>(json!({
                "fetched": fetched,
                "looped": looped,
                "paid": paid.map(|e| e.data),
                "done": done,
                "invoked": invoked,
                "sent": { "ids": ids },
                "flaky": flaky,
            }))
        })
        .unwrap()
}

/// Our handler in dev mode (unsigned, as the official one in dev mode); returns its URL.
async fn start_ours(event_api: &str) -> String {
    let client = Arc::new(
        InngestClient::new(InngestConfig::new(
            url::Url::parse(event_api).unwrap(),
            "harness",
        ))
        .unwrap(),
    );
    let runtime = JobsRuntime::forwarding(client.clone(), client, "inngest", Default::default());
    runtime.register(steps_function()).unwrap();
    let mut config = ServeConfig::new("calendar-agent", None);
    config.mode = ServeMode::Dev;
    config.serve_path = "/".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let router = serve_router(runtime, config).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// A stand-in for Inngest's Event API: every send gets the same ids back.
async fn start_event_api() -> String {
    let app = axum::Router::new().route(
        "/e/{key}",
        post(|Json(body): Json<Value>| async move {
            let n = body.as_array().map_or(1, Vec::len);
            let ids: Vec<String> = (0..n).map(|i| format!("sent-{i}")).collect();
            Json(json!({ "ids": ids, "status": 200 }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// What must be equal in a `206` operation: everything but timings and stack traces.
fn normalized(op: &Value) -> Value {
    let mut out = json!({});
    for key in [
        "id",
        "op",
        "name",
        "displayName",
        "opts",
        "data",
        "userland",
    ] {
        if let Some(v) = op.get(key) {
            out[key] = v.clone();
        }
    }
    if let Some(err) = op.get("error") {
        out["error"] = json!({ "name": err["name"], "message": err["message"] });
    }
    out
}

async fn call(http: &reqwest::Client, base: &str, step_id: &str, body: &Value) -> (u16, Value) {
    let response = http
        .post(format!("{base}?fnId=calendar-agent-steps&stepId={step_id}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Drives one run through both handlers; returns the operations seen, in order.
async fn run_both(
    official: &str,
    ours: &str,
    event: Value,
    disable_immediate: bool,
) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut steps = serde_json::Map::new();
    let mut stack: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut target = "step".to_owned();
    for round in 0..40 {
        let body = json!({
            "event": event,
            "events": [event],
            "steps": steps,
            "ctx": {
                "run_id": "01HARNESSRUN",
                "attempt": 0,
                "disable_immediate_execution": disable_immediate,
                "use_api": false,
                "stack": { "stack": stack, "current": stack.len() },
            },
        });
        let (their_status, theirs) = call(&http, official, &target, &body).await;
        let (our_status, mine) = call(&http, ours, &target, &body).await;
        assert_eq!(
            our_status, their_status,
            "round {round}: status\nours: {mine}\ntheirs: {theirs}"
        );
        if their_status != 206 {
            if their_status == 200 {
                assert_eq!(mine, theirs, "round {round}: the function's output");
            }
            seen.push(format!("{their_status}"));
            return seen;
        }
        let their_op = normalized(&theirs[0]);
        let our_op = normalized(&mine[0]);
        assert_eq!(our_op, their_op, "round {round}: the reported operation");
        let id = their_op["id"].as_str().unwrap().to_owned();
        let op = their_op["op"].as_str().unwrap().to_owned();
        seen.push(op.clone());
        target = "step".to_owned();
        let memo = match op.as_str() {
            "StepPlanned" => {
                target = id.clone();
                continue;
            }
            "StepRun" => json!({ "data": their_op["data"] }),
            "StepError" => json!({ "error": their_op["error"] }),
            "Sleep" => json!({ "data": null }),
            "WaitForEvent" if their_op["name"] == "t/paid" => {
                json!({ "data": { "name": "t/paid", "data": { "userId": "u1", "amount": 5 } } })
            }
            "WaitForEvent" => json!({ "data": null }),
            "InvokeFunction" => json!({ "data": { "y": 2 } }),
            other => panic!("unexpected op {other}"),
        };
        steps.insert(id.clone(), memo);
        stack.push(id);
    }
    panic!("the run did not end in 40 requests: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_and_ours_answer_the_executor_alike() {
    let event_api = start_event_api().await;
    let (_node, official) = start_official(&event_api);
    let ours = start_ours(&event_api).await;
    let event =
        json!({ "name": "t/steps", "data": { "n": 3, "userId": "u1" }, "id": "e1", "ts": 1 });

    let immediate = run_both(&official, &ours, event.clone(), false).await;
    assert_eq!(
        immediate,
        [
            "StepRun",
            "StepRun",
            "StepRun",
            "Sleep",
            "Sleep",
            "WaitForEvent",
            "WaitForEvent",
            "InvokeFunction",
            "StepRun",
            "StepRun",
            "200"
        ]
    );

    let planned = run_both(&official, &ours, event.clone(), true).await;
    assert_eq!(
        planned.iter().filter(|o| *o == "StepPlanned").count(),
        5,
        "{planned:?}"
    );
    assert_eq!(planned.last().map(String::as_str), Some("200"));

    let mut failing = event;
    failing["data"]["fail"] = json!(true);
    let failed = run_both(&official, &ours, failing, false).await;
    assert!(failed.contains(&"StepError".to_owned()), "{failed:?}");
    assert_eq!(
        failed.last().map(String::as_str),
        Some("400"),
        "an unhandled step error fails the run"
    );
}
