//! Steps served to Inngest, against the examples of Inngest's SDK specification
//! (github.com/inngest/inngest, `docs/SDK_SPEC.md` §5): the two-step example's three call
//! requests and replies, step-id hashing (§5.1.2), planned steps run by `stepId` (§5.3.1), a
//! memoized error failing the run without retries (§5.2.2), and the execution version (§4.1.2).
#![cfg(feature = "serve")]

use std::time::Duration;

use infra_core::{Error, Event};
use infra_jobs::{
    Function, JobContext, JobsRuntime, MemoryQueue, ServeConfig, ServeMode, serve_router,
};
use serde_json::{Value, json};

async fn serve(function: Function) -> String {
    let runtime = JobsRuntime::new(std::sync::Arc::new(MemoryQueue::new()));
    runtime.register(function).unwrap();
    let mut config = ServeConfig::new("app", None);
    config.mode = ServeMode::Dev;
    config.serve_path = "/api/inngest".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/inngest", listener.local_addr().unwrap());
    let router = serve_router(runtime, config).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// §5's example: `A = step.run("first-step", () => "A"); B = step.run("second-step", () => A + "B"); return B`.
fn two_steps() -> Function {
    Function::builder("fn")
        .on_event("t/e")
        .raw_handler(|_event: Event, ctx: JobContext| async move {
            let step = ctx.step();
            let a: String = step
                .run("first-step", || async { Ok::<_, Error>("A".to_owned()) })
                .await?;
            let b: String = step
                .run(
                    "second-step",
                    || async move { Ok::<_, Error>(format!("{a}B")) },
                )
                .await?;
            Ok::<_, Error>(json!(b))
        })
        .unwrap()
}

fn request(steps: Value, disable_immediate: bool) -> Value {
    json!({
        "event": {"name": "t/e", "data": {}},
        "events": [{"name": "t/e", "data": {}}],
        "steps": steps,
        "ctx": {"run_id": "01RUN", "attempt": 0, "disable_immediate_execution": disable_immediate,
                "use_api": false, "stack": {"stack": [], "current": 0}},
    })
}

async fn post(url: &str, step_id: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}?fnId=app-fn&stepId={step_id}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

/// A step id as §5.1.2 hashes it: hex SHA-1.
fn sha1(id: &str) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(Sha1::digest(id.as_bytes()))
}

#[tokio::test]
async fn the_spec_example_runs_in_three_call_requests() {
    let url = serve(two_steps()).await;
    let (a, b) = (sha1("first-step"), sha1("second-step"));
    // §5.1.2: "`my-step-id` would be hashed as `e7d8a2f140845095749d60246ff1110c9d01d76a`".
    assert_eq!(
        sha1("my-step-id"),
        "e7d8a2f140845095749d60246ff1110c9d01d76a"
    );

    let (status, headers, body) = post(&url, "step", &request(json!({}), false)).await;
    assert_eq!(status, 206);
    assert_eq!(headers["x-inngest-req-version"], "2");
    assert_eq!(body[0]["op"], "StepRun");
    assert_eq!(body[0]["id"], a.as_str());
    assert_eq!(body[0]["data"], "A");

    let (status, _, body) = post(&url, "step", &request(json!({ &a: {"data": "A"} }), false)).await;
    assert_eq!((status, body[0]["op"].clone()), (206, json!("StepRun")));
    assert_eq!(body[0]["id"], b.as_str());
    assert_eq!(body[0]["data"], "AB");

    let memo = json!({ &a: {"data": "A"}, &b: {"data": "AB"} });
    let (status, _, body) = post(&url, "step", &request(memo, false)).await;
    assert_eq!((status, body), (200, json!("AB")));
}

#[tokio::test]
async fn planned_steps_run_when_named_and_memoized_errors_fail_the_run() {
    let url = serve(two_steps()).await;
    let a = sha1("first-step");
    // §5.3.1: immediate execution disabled: the step is planned, then run by its own request.
    let (status, _, body) = post(&url, "step", &request(json!({}), true)).await;
    assert_eq!((status, body[0]["op"].clone()), (206, json!("StepPlanned")));
    assert_eq!(body[0]["id"], a.as_str());
    let (status, _, body) = post(&url, &a, &request(json!({}), true)).await;
    assert_eq!((status, body[0]["op"].clone()), (206, json!("StepRun")));
    assert_eq!(body[0]["data"], "A");
    // A request naming a step the code does not reach first: StepNotFound.
    let (status, _, body) = post(&url, &sha1("nowhere"), &request(json!({}), true)).await;
    assert_eq!(
        (status, body[0]["op"].clone()),
        (206, json!("StepNotFound"))
    );
    // §5.2.2: a memoized error thrown into code that does not handle it fails the run for good.
    let memo = json!({ &a: {"error": {"name": "Error", "message": "exhausted"}} });
    let (status, headers, body) = post(&url, "step", &request(memo, false)).await;
    assert_eq!(status, 400);
    assert_eq!(headers["x-inngest-no-retry"], "true");
    assert!(
        body["message"].as_str().unwrap().contains("exhausted"),
        "{body}"
    );
}

#[tokio::test]
async fn sleeps_waits_and_invocations_report_their_options() {
    let f = Function::builder("fn")
        .on_event("t/e")
        .raw_handler(|_event: Event, ctx: JobContext| async move {
            let step = ctx.step();
            step.sleep("s", Duration::from_secs(90)).await?;
            let _ = step
                .wait_for_event(
                    "w",
                    "t/x",
                    infra_jobs::Match::field("data.id"),
                    Duration::from_secs(3600),
                )
                .await?;
            let _: Value = step
                .invoke("i", "other", json!({"a": 1}), Duration::from_secs(60))
                .await?;
            Ok::<_, Error>(json!(null))
        })
        .unwrap();
    let url = serve(f).await;
    let (_, _, body) = post(&url, "step", &request(json!({}), false)).await;
    assert_eq!(body[0]["op"], "Sleep");
    assert_eq!(body[0]["name"], "1m30s");
    let memo = json!({ sha1("s"): {"data": null} });
    let (_, _, body) = post(&url, "step", &request(memo.clone(), false)).await;
    // §5.3.3
    assert_eq!(body[0]["op"], "WaitForEvent");
    assert_eq!(body[0]["name"], "t/x");
    assert_eq!(
        body[0]["opts"],
        json!({"timeout": "1h", "if": "event.data.id == async.data.id"})
    );
    let mut memo = memo;
    memo[sha1("w")] = json!({"data": null});
    let (_, _, body) = post(&url, "step", &request(memo, false)).await;
    // §5.3.4: the invoked function by composite id, its event without a name.
    assert_eq!(body[0]["op"], "InvokeFunction");
    assert_eq!(
        body[0]["opts"],
        json!({"function_id": "app-other", "payload": {"data": {"a": 1}}, "timeout": "1m"})
    );
}
