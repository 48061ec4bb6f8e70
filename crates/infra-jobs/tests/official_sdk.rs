//! Compatibility with the official `inngest` npm SDK: an app using it sends events into our
//! runtime by pointing its event API base URL at our ingestion route, and our functions run;
//! call requests we sign pass the SDK's own verification, and its sync authorizes with the
//! same hashed signing key ours does; an in-band sync, signed as Inngest signs it, is
//! answered by the SDK and by our handler alike.
//!
//! Needs Node and `npm ci` in `tests/compat` (`cargo xtask ci` does it); fails, never skips,
//! without.
#![cfg(feature = "serve")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;

use infra_core::{Event, TypedEvent};
use infra_jobs::{
    Function, IngestConfig, JobContext, JobsRuntime, MemoryQueue, Outcome, ServeConfig, SigningKey,
    SigningKeys, WorkerSettings, ingest_router, serve_router,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The calendar agent's sync request, with the JSON keys the TypeScript module sends.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CalendarSyncRequested {
    user_id: String,
    calendar_id: String,
    workspace_id: String,
}

impl TypedEvent for CalendarSyncRequested {
    const NAME: &'static str = "calendar/sync.requested";
}

fn compat_dir() -> PathBuf {
    let compat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    assert!(
        compat.join("node_modules/inngest").exists(),
        "run `npm ci` in {} first (cargo xtask ci does)",
        compat.display()
    );
    compat
}

/// Runs a compat script with `args`; returns its JSON output line.
async fn node(script: &'static str, args: Vec<String>) -> Value {
    let compat = compat_dir();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(compat.join(script))
            .args(args)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// What ran: (function, the event's id, a field of its data).
type Ran = (&'static str, Option<String>, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_by_the_official_sdk_run_on_our_runtime() {
    let runtime = JobsRuntime::with_settings(
        Arc::new(MemoryQueue::new()),
        Default::default(),
        WorkerSettings::default().with_poll_interval(Duration::from_millis(50)),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<Ran>();
    let sync_tx = tx.clone();
    runtime
        .register(
            Function::typed::<CalendarSyncRequested>("sync-calendar")
                .handler(move |event: CalendarSyncRequested, ctx: JobContext| {
                    let tx = sync_tx.clone();
                    async move {
                        let id = ctx.event().id.clone();
                        tx.send(("sync-calendar", id, event.workspace_id)).unwrap();
                        Outcome::success()
                    }
                })
                .unwrap(),
        )
        .unwrap();
    runtime
        .register(
            Function::builder("send-email")
                .on_event("email/send.requested")
                .raw_handler(move |event: Event, _ctx| {
                    let tx = tx.clone();
                    async move {
                        let to = event.data["to"].as_str().unwrap_or_default().to_owned();
                        tx.send(("send-email", event.id, to)).unwrap();
                        Outcome::success()
                    }
                })
                .unwrap(),
        )
        .unwrap();
    runtime.start().await.unwrap();

    let app = ingest_router(Arc::new(runtime.clone()), IngestConfig::new(["compat-key"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let out = node(
        "inngest_send.js",
        vec![
            format!("http://{addr}/"),
            "compat-key".into(),
            "not-our-key".into(),
        ],
    )
    .await;
    assert_eq!(out["single"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["batch"].as_array().unwrap().len(), 2, "{out}");
    let wrong = out["wrongKeyError"]
        .as_str()
        .expect("a wrong key fails the send");
    assert!(wrong.contains("Event key not found"), "{wrong}");

    let mut ran = Vec::new();
    while ran.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the functions run")
            .unwrap();
        ran.push(next);
    }
    ran.sort();
    assert_eq!(ran[0].0, "send-email");
    assert_eq!(ran[0].2, "a@example.com");
    assert_eq!(
        ran[1..]
            .iter()
            .map(|(f, _, ws)| (*f, ws.as_str()))
            .collect::<Vec<_>>(),
        [("sync-calendar", "w1"), ("sync-calendar", "w2")]
    );
    assert!(
        ran.iter()
            .any(|(_, id, _)| id.as_deref() == Some("dedup-u2")),
        "the SDK's event id reaches the function: {ran:?}"
    );
    // Nothing else ran: the wrong key's event was never enqueued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err());
    runtime.shutdown().await;
}

/// The SDK's serve process, killed (by its own handle) when the test ends.
struct NodeServer(Child);

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a stand-in Inngest API received on `/fn/register`: (authorization, body).
type Registered = Arc<Mutex<Vec<(String, Value)>>>;

async fn record_register(
    State(seen): State<Registered>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.lock().unwrap().push((auth, body));
    Json(json!({"ok": true, "modified": false}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_accepts_our_signatures_and_hashes_the_key_as_we_do() {
    const KEY: &str = "signkey-test-12345678";
    let seen = Registered::default();
    let api = axum::Router::new()
        .route("/fn/register", post(record_register))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });

    let compat = compat_dir();
    let (server, port) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("node")
            .arg(compat.join("inngest_serve.js"))
            .arg(KEY)
            .arg(format!("http://{api_addr}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = serde_json::from_str::<Value>(&line)
            .map(|v| v["port"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        (NodeServer(child), port)
    })
    .await
    .unwrap();
    assert!(port > 0, "the SDK's server did not start");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    // Inngest's server sends canonical JSON (sorted keys, no spaces); the SDK signs the
    // canonical form of what it parses, so on such bytes its check and ours agree.
    let body = r#"{"ctx":{"attempt":0,"disable_immediate_execution":false,"run_id":"01HRUN","stack":{"current":0,"stack":[]},"use_api":false},"event":{"data":{"userId":"u1"},"id":"e1","name":"calendar/sync.requested","ts":1700000000000,"user":{}},"events":[{"data":{"userId":"u1"},"id":"e1","name":"calendar/sync.requested","ts":1700000000000,"user":{}}],"steps":{}}"#;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = SigningKey::new("INNGEST_SIGNING_KEY", KEY);
    let call = |payload: String, signature: String| {
        http.post(format!(
            "{base}/?fnId=calendar-agent-sync-calendar&stepId=step"
        ))
        .header("content-type", "application/json")
        .header("X-Inngest-Signature", signature)
        .body(payload)
        .send()
    };
    let response = call(body.to_owned(), key.header_value(body.as_bytes(), now))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply, json!({"synced": "u1"}));
    // The same signature on a tampered body is refused by the SDK too.
    let tampered = body.replace("\"u1\"", "\"u2\"");
    let response = call(tampered, key.header_value(body.as_bytes(), now))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // The SDK's own sync authorizes with the key hashed exactly as ours.
    let response = http.put(format!("{base}/")).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (auth, payload) = &seen[0];
    assert_eq!(*auth, format!("Bearer {}", key.hashed().unwrap().expose()));
    assert_eq!(payload["appName"], "calendar-agent");
    assert_eq!(
        payload["functions"][0]["id"],
        "calendar-agent-sync-calendar"
    );
    assert_eq!(
        payload["functions"][0]["triggers"],
        json!([{"event": "calendar/sync.requested"}])
    );
    let url = payload["functions"][0]["steps"]["step"]["runtime"]["url"]
        .as_str()
        .unwrap();
    assert!(
        url.contains("fnId=calendar-agent-sync-calendar") && url.contains("stepId=step"),
        "{url}"
    );
    drop(server);
}

/// Starts the SDK's own serve handler (`inngest_serve.js`) with `KEY`; its base URL.
async fn sdk_server(key: &'static str, api: String) -> (NodeServer, String) {
    let compat = compat_dir();
    let (server, port) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("node")
            .arg(compat.join("inngest_serve.js"))
            .arg(key)
            .arg(api)
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = serde_json::from_str::<Value>(&line)
            .map(|v| v["port"].as_u64().unwrap_or(0))
            .unwrap_or(0);
        (NodeServer(child), port)
    })
    .await
    .unwrap();
    assert!(port > 0, "the SDK's server did not start");
    (server, format!("http://127.0.0.1:{port}"))
}

/// What a sync answered: status, sync kind, signature header, body.
struct SyncAnswer {
    status: u16,
    kind: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
}

async fn put_in_band(url: &str, body: &str, signature: Option<String>) -> SyncAnswer {
    let mut request = reqwest::Client::new()
        .put(url)
        .header("content-type", "application/json")
        .header("X-Inngest-Sync-Kind", "in_band")
        .header("X-Inngest-Server-Kind", "cloud")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("X-Inngest-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    SyncAnswer {
        status: response.status().as_u16(),
        kind: header("x-inngest-sync-kind"),
        signature: header("x-inngest-signature"),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_band_sync_is_answered_like_the_official_sdk_answers_it() {
    const KEY: &str = "signkey-test-12345678";
    // Neither handler may call Inngest's API during an in-band sync: this one refuses all.
    let (sdk, sdk_url) = sdk_server(KEY, "http://127.0.0.1:9".to_owned()).await;

    let runtime = JobsRuntime::new(Arc::new(MemoryQueue::new()));
    runtime
        .register(
            Function::typed::<CalendarSyncRequested>("sync-calendar")
                .handler(
                    |event: CalendarSyncRequested, _ctx: JobContext| async move {
                        Outcome::Success(json!({"synced": event.user_id}))
                    },
                )
                .unwrap(),
        )
        .unwrap();
    let mut config = ServeConfig::new("calendar-agent", Some(SigningKeys::new(KEY)));
    config.serve_path = "/".to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours_url = format!("http://{}/", listener.local_addr().unwrap());
    let router = serve_router(runtime, config).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let body = r#"{"url":"https://app.example.com/api/inngest"}"#;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = SigningKey::new("INNGEST_SIGNING_KEY", KEY);
    let signed = || Some(key.header_value(body.as_bytes(), now));
    let theirs = put_in_band(&format!("{sdk_url}/"), body, signed()).await;
    let ours = put_in_band(&ours_url, body, signed()).await;

    for (who, answer) in [("the SDK", &theirs), ("ours", &ours)] {
        assert_eq!(
            answer.status,
            200,
            "{who}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.kind.as_deref(), Some("in_band"), "{who}");
        SigningKeys::new(KEY)
            .verify(answer.signature.as_deref(), &answer.body)
            .unwrap_or_else(|e| panic!("{who}'s reply is not signed with the key: {e}"));
    }
    let theirs: Value = serde_json::from_slice(&theirs.body).unwrap();
    let ours: Value = serde_json::from_slice(&ours.body).unwrap();
    for field in ["app_id", "url"] {
        assert_eq!(ours[field], theirs[field], "{field}");
    }
    assert_eq!(ours["url"], "https://app.example.com/api/inngest");
    let functions = |reply: &Value| -> Vec<(Value, Value, Value)> {
        reply["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].clone(),
                    f["triggers"].clone(),
                    f["steps"]["step"]["runtime"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(functions(&ours), functions(&theirs));
    assert_eq!(
        ours["inspection"]["authentication_succeeded"],
        theirs["inspection"]["authentication_succeeded"]
    );
    for field in [
        "sdk",
        "framework",
        "sdk_language",
        "sdk_version",
        "inspection",
    ] {
        assert!(!ours[field].is_null(), "ours lacks {field}: {ours}");
        assert!(
            !theirs[field].is_null(),
            "the SDK's lacks {field}: {theirs}"
        );
    }

    // Unsigned, both refuse it.
    let theirs = put_in_band(&format!("{sdk_url}/"), body, None).await;
    let ours = put_in_band(&ours_url, body, None).await;
    assert_eq!((theirs.status, ours.status), (401, 401));
    drop(sdk);
}
