//! The `/api/inngest` serve handler against a local stand-in for Inngest's API: sync
//! (register call received and correct), signed call requests with the status codes and
//! headers of Inngest's SDK specification (github.com/inngest/inngest, `docs/SDK_SPEC.md`
//! §4.1–§4.5), and introspection.
#![cfg(feature = "serve")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use infra_core::{Event, TypedEvent};
use infra_jobs::{
    Function, JobContext, JobsRuntime, MemoryQueue, Outcome, ServeConfig, ServeMode, SigningKey,
    SigningKeys, serve_router,
};
use serde_json::{Value, json};

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

const APP: &str = "calendar-agent";
const KEY: &str = "signkey-test-12345678";
const FALLBACK: &str = "signkey-test-abcdef00";

/// One register call: query string, headers, body.
type Registered = (Option<String>, HeaderMap, Value);

/// What the stand-in Inngest API saw.
#[derive(Clone, Default)]
struct Api {
    registers: Arc<Mutex<Vec<Registered>>>,
    /// The bearer tokens it accepts.
    accepted: Arc<Mutex<Vec<String>>>,
}

fn bearer_ok(api: &Api, headers: &HeaderMap) -> bool {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    api.accepted
        .lock()
        .unwrap()
        .iter()
        .any(|t| given == format!("Bearer {t}"))
}

async fn register(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let ok = bearer_ok(&api, &headers);
    api.registers.lock().unwrap().push((query, headers, body));
    if ok {
        (StatusCode::OK, Json(json!({"ok": true, "modified": true})))
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "signing key not recognised"})),
        )
    }
}

async fn batch(
    State(api): State<Api>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !bearer_ok(&api, &headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "no"})));
    }
    (
        StatusCode::OK,
        Json(json!([{
            "name": "calendar/sync.requested",
            "data": {"userId": format!("from-api-{run_id}"), "calendarId": "c", "workspaceId": "w"},
            "id": "evt-api", "ts": 1_700_000_000_000i64,
        }])),
    )
}

async fn listen(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

struct Fixture {
    app: String,
    api: Api,
    runs: Arc<AtomicUsize>,
}

fn runtime(runs: Arc<AtomicUsize>) -> JobsRuntime {
    let runtime = JobsRuntime::new(Arc::new(MemoryQueue::new()));
    runtime
        .register(
            Function::typed::<CalendarSyncRequested>("sync-calendar")
                .name("Sync a calendar")
                .retries(2)
                .concurrency(20)
                .concurrency_per_key(1, "event.data.userId")
                .idempotency(
                    ["event.data.userId", "event.data.calendarId"],
                    Duration::from_secs(600),
                )
                .debounce(Duration::from_millis(1500), Some("event.data.calendarId"))
                .handler(move |event: CalendarSyncRequested, ctx: JobContext| {
                    let runs = runs.clone();
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Outcome::Success(json!({
                            "synced": event.user_id,
                            "attempt": ctx.attempt(),
                            "run": ctx.run_id(),
                        }))
                    }
                })
                .unwrap(),
        )
        .unwrap();
    runtime
        .register(
            Function::builder("flaky")
                .on_event("flaky/run")
                .raw_handler(|_: Event, _| async {
                    Outcome::retry_after("provider is busy", Duration::from_millis(29_500))
                })
                .unwrap(),
        )
        .unwrap();
    runtime
        .register(
            Function::builder("doomed")
                .on_event("doomed/run")
                .raw_handler(|_: Event, _| async { Outcome::fail("the user no longer exists") })
                .unwrap(),
        )
        .unwrap();
    runtime
        .register(
            Function::builder("hourly-digest")
                .on_cron("0 * * * *")
                .raw_handler(|_: Event, _| async { Outcome::success() })
                .unwrap(),
        )
        .unwrap();
    runtime
}

async fn fixture(mode: ServeMode, keys: Option<SigningKeys>) -> Fixture {
    let api = Api::default();
    let api_url = listen(
        axum::Router::new()
            .route("/fn/register", post(register))
            .route("/v0/runs/{run_id}/batch", get(batch))
            // A trimmed call's memoized steps (§4.4.2): none in these single-step runs.
            .route(
                "/v0/runs/{run_id}/actions",
                get(|| async { axum::Json(serde_json::json!({})) }),
            )
            .with_state(api.clone()),
    )
    .await;
    let runs = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = format!("http://{}", listener.local_addr().unwrap());
    let mut config = ServeConfig::new(APP, keys);
    config.mode = mode;
    config.api_base_url = url::Url::parse(&api_url).unwrap();
    // Out-of-band syncs register the configured origin: here, where the handler listens.
    config.serve_origin = Some(url::Url::parse(&app).unwrap());
    config.timeout = Duration::from_secs(10);
    let router = serve_router(runtime(runs.clone()), config).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Fixture { app, api, runs }
}

fn hashed(key: &str) -> String {
    SigningKey::new("INNGEST_SIGNING_KEY", key)
        .hashed()
        .unwrap()
        .expose()
        .clone()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn call_body(event: Value, attempt: u32) -> String {
    json!({
        "event": event,
        "events": [event],
        "steps": {},
        "ctx": {
            "run_id": "01HRUN", "attempt": attempt, "disable_immediate_execution": false,
            "use_api": false, "stack": {"stack": [], "current": 0},
        },
    })
    .to_string()
}

fn sync_event() -> Value {
    json!({
        "name": "calendar/sync.requested",
        "data": {"userId": "u1", "calendarId": "c1", "workspaceId": "w1"},
        "id": "01HEVT", "ts": 1_700_000_000_000i64, "user": {}, "v": "1",
    })
}

async fn call(
    fx: &Fixture,
    fn_id: &str,
    body: &str,
    signature: Option<String>,
) -> (u16, HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/inngest?fnId={fn_id}&stepId=step", fx.app))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("X-Inngest-Signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn assert_sdk_headers(headers: &HeaderMap) {
    assert_eq!(
        header(headers, "x-inngest-sdk"),
        Some(infra_jobs::SDK_HEADER_VALUE)
    );
    assert!(infra_jobs::SDK_HEADER_VALUE.starts_with("infra-jobs:v"));
    assert_eq!(header(headers, "x-inngest-req-version"), Some("2"));
}

#[tokio::test]
async fn sync_registers_the_apps_functions_with_inngest() {
    let fx = fixture(ServeMode::Cloud, Some(SigningKeys::new(KEY))).await;
    fx.api.accepted.lock().unwrap().push(hashed(KEY));
    let response = reqwest::Client::new()
        .put(format!("{}/api/inngest?deployId=dep-1", fx.app))
        .header("X-Inngest-Server-Kind", "cloud")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_sdk_headers(response.headers());
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        reply,
        json!({"message": "Successfully synced.", "modified": true})
    );

    let registers = fx.api.registers.lock().unwrap();
    assert_eq!(registers.len(), 1);
    let (query, headers, body) = &registers[0];
    assert_eq!(query.as_deref(), Some("deployId=dep-1"));
    assert_eq!(
        header(headers, "authorization").unwrap(),
        format!(
            "Bearer signkey-test-{}",
            "b2ed992186a5cb19f6668aade821f502c1d00970dfd0e35128d51bac4649916c"
        )
    );
    assert_sdk_headers(headers);
    assert_eq!(
        header(headers, "x-inngest-expected-server-kind"),
        Some("cloud")
    );

    let url = format!("{}/api/inngest", fx.app);
    assert_eq!(body["url"], url.as_str(), "no deployId in the URL");
    assert_eq!(body["deployType"], "ping");
    assert_eq!(body["appName"], APP);
    assert_eq!(body["v"], "0.1");
    assert_eq!(body["sdk"], infra_jobs::SDK_HEADER_VALUE);
    let functions = body["functions"].as_array().unwrap();
    let ids: Vec<&str> = functions
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "calendar-agent-doomed",
            "calendar-agent-flaky",
            "calendar-agent-hourly-digest",
            "calendar-agent-sync-calendar"
        ],
        "the built-in health probe is not synced"
    );
    let sync = &functions[3];
    assert_eq!(sync["name"], "Sync a calendar");
    assert_eq!(
        sync["triggers"],
        json!([{"event": "calendar/sync.requested"}])
    );
    let step = &sync["steps"]["step"];
    assert_eq!(step["id"], "step");
    assert_eq!(step["runtime"]["type"], "http");
    assert_eq!(
        step["runtime"]["url"],
        format!("{url}?fnId=calendar-agent-sync-calendar&stepId=step")
    );
    assert_eq!(step["retries"]["attempts"], 3);
    assert_eq!(
        sync["concurrency"],
        json!([{"limit": 20}, {"limit": 1, "key": "event.data.userId"}])
    );
    assert_eq!(
        sync["idempotency"],
        r#"event.data.userId + ":" + event.data.calendarId"#
    );
    assert_eq!(
        sync["debounce"],
        json!({"period": "1500ms", "key": "event.data.calendarId"})
    );
    assert!(functions[0].get("concurrency").is_none());
    assert_eq!(functions[2]["triggers"], json!([{"cron": "0 * * * *"}]));
}

#[tokio::test]
async fn sync_falls_back_to_the_fallback_key_and_reports_inngests_error() {
    let fx = fixture(
        ServeMode::Cloud,
        Some(SigningKeys::new(KEY).with_fallback(FALLBACK)),
    )
    .await;
    fx.api.accepted.lock().unwrap().push(hashed(FALLBACK));
    let response = reqwest::Client::new()
        .put(format!("{}/api/inngest", fx.app))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    {
        let registers = fx.api.registers.lock().unwrap();
        assert_eq!(registers.len(), 2, "primary refused, then fallback");
        assert_eq!(
            header(&registers[1].1, "authorization").unwrap(),
            format!("Bearer {}", hashed(FALLBACK))
        );
    }

    fx.api.accepted.lock().unwrap().clear();
    let response = reqwest::Client::new()
        .put(format!("{}/api/inngest", fx.app))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["modified"], false);
    let message = reply["message"].as_str().unwrap();
    assert!(message.contains("signing key not recognised"), "{message}");
}

#[tokio::test]
async fn a_signed_call_runs_the_function_and_returns_its_output() {
    let fx = fixture(ServeMode::Cloud, Some(SigningKeys::new(KEY))).await;
    let body = call_body(sync_event(), 1);
    let signature =
        SigningKey::new("INNGEST_SIGNING_KEY", KEY).header_value(body.as_bytes(), now());
    let (status, headers, reply) =
        call(&fx, "calendar-agent-sync-calendar", &body, Some(signature)).await;
    assert_eq!(status, 200, "{reply}");
    assert_sdk_headers(&headers);
    assert_eq!(
        reply,
        json!({"synced": "u1", "attempt": 2, "run": "01HRUN"})
    );
    assert_eq!(fx.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retryable_and_final_failures_use_the_specified_codes_and_headers() {
    let fx = fixture(ServeMode::Cloud, Some(SigningKeys::new(KEY))).await;
    let key = SigningKey::new("INNGEST_SIGNING_KEY", KEY);

    let body = call_body(json!({"name": "flaky/run", "data": {}}), 0);
    let sig = key.header_value(body.as_bytes(), now());
    let (status, headers, reply) = call(&fx, "calendar-agent-flaky", &body, Some(sig)).await;
    assert_eq!(status, 500);
    assert_sdk_headers(&headers);
    assert_eq!(header(&headers, "x-inngest-no-retry"), Some("false"));
    assert_eq!(
        header(&headers, "retry-after"),
        Some("30"),
        "29.5s rounds up"
    );
    assert_eq!(reply["message"], "provider is busy");
    assert!(reply["name"].is_string());

    let body = call_body(json!({"name": "doomed/run", "data": {}}), 0);
    let sig = key.header_value(body.as_bytes(), now());
    let (status, headers, reply) = call(&fx, "calendar-agent-doomed", &body, Some(sig)).await;
    assert_eq!(status, 400);
    assert_sdk_headers(&headers);
    assert_eq!(header(&headers, "x-inngest-no-retry"), Some("true"));
    assert!(header(&headers, "retry-after").is_none());
    assert_eq!(reply["message"], "the user no longer exists");
}

#[tokio::test]
async fn unverifiable_calls_are_refused_with_500_and_run_nothing() {
    let fx = fixture(
        ServeMode::Cloud,
        Some(SigningKeys::new(KEY).with_fallback(FALLBACK)),
    )
    .await;
    let key = SigningKey::new("INNGEST_SIGNING_KEY", KEY);
    let body = call_body(sync_event(), 0);
    let tampered = body.replace("\"u1\"", "\"u2\"");
    let cases = [
        ("missing", None),
        (
            "tampered body",
            Some((tampered.clone(), key.header_value(body.as_bytes(), now()))),
        ),
        (
            "stale",
            Some((body.clone(), key.header_value(body.as_bytes(), now() - 301))),
        ),
        (
            "another key",
            Some((
                body.clone(),
                SigningKey::new("X", "signkey-test-99").header_value(body.as_bytes(), now()),
            )),
        ),
        ("garbage", Some((body.clone(), "t=soon&s=zz".to_owned()))),
    ];
    for (case, signed) in cases {
        let (payload, sig) = match signed {
            Some((payload, sig)) => (payload, Some(sig)),
            None => (body.clone(), None),
        };
        let (status, headers, reply) =
            call(&fx, "calendar-agent-sync-calendar", &payload, sig).await;
        assert_eq!(status, 500, "{case}: {reply}");
        assert_sdk_headers(&headers);
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains("X-Inngest-Signature"), "{case}: {message}");
    }
    assert_eq!(fx.runs.load(Ordering::SeqCst), 0);

    // The fallback key verifies (Inngest still signs with the old key during rotation).
    let sig = SigningKey::new("INNGEST_SIGNING_KEY_FALLBACK", FALLBACK)
        .header_value(body.as_bytes(), now());
    let (status, _, _) = call(&fx, "calendar-agent-sync-calendar", &body, Some(sig)).await;
    assert_eq!(status, 200);
    assert_eq!(fx.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unknown_function_is_500() {
    let fx = fixture(ServeMode::Cloud, Some(SigningKeys::new(KEY))).await;
    let key = SigningKey::new("INNGEST_SIGNING_KEY", KEY);
    let body = call_body(sync_event(), 0);
    for fn_id in [
        "calendar-agent-nope",
        "calendar-agent-infra-jobs.health-probe",
    ] {
        let sig = key.header_value(body.as_bytes(), now());
        let (status, headers, reply) = call(&fx, fn_id, &body, Some(sig)).await;
        assert_eq!(status, 500, "{fn_id}");
        assert_sdk_headers(&headers);
        assert!(
            reply["message"].as_str().unwrap().contains(fn_id),
            "{reply}"
        );
    }
}

#[tokio::test]
async fn a_trimmed_call_fetches_its_event_from_the_api() {
    let fx = fixture(ServeMode::Cloud, Some(SigningKeys::new(KEY))).await;
    fx.api.accepted.lock().unwrap().push(hashed(KEY));
    let body = json!({
        "event": {}, "events": [], "steps": {},
        "ctx": {"run_id": "01HBIG", "attempt": 0, "use_api": true},
    })
    .to_string();
    let sig = SigningKey::new("INNGEST_SIGNING_KEY", KEY).header_value(body.as_bytes(), now());
    let (status, _, reply) = call(&fx, "calendar-agent-sync-calendar", &body, Some(sig)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["synced"], "from-api-01HBIG");
}

#[tokio::test]
async fn introspection_shows_key_hashes_only_to_signed_requests() {
    let fx = fixture(
        ServeMode::Cloud,
        Some(SigningKeys::new(KEY).with_fallback(FALLBACK)),
    )
    .await;
    let url = format!("{}/api/inngest", fx.app);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_sdk_headers(response.headers());
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["function_count"], 4);
    assert_eq!(reply["has_signing_key"], true);
    assert_eq!(reply["has_event_key"], false);
    assert_eq!(reply["mode"], "cloud");
    assert!(reply.get("signing_key_hash").is_none(), "{reply}");
    let allowed = [
        "extra",
        "function_count",
        "has_event_key",
        "has_signing_key",
        "mode",
        "signing_key_fallback_hash",
        "signing_key_hash",
    ];
    assert!(
        reply
            .as_object()
            .unwrap()
            .keys()
            .all(|k| allowed.contains(&k.as_str()))
    );

    let sig = SigningKey::new("INNGEST_SIGNING_KEY", KEY).header_value(b"", now());
    let reply: Value = reqwest::Client::new()
        .get(&url)
        .header("X-Inngest-Signature", sig)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["signing_key_hash"], hashed(KEY));
    assert_eq!(reply["signing_key_fallback_hash"], hashed(FALLBACK));
    assert!(
        reply
            .as_object()
            .unwrap()
            .keys()
            .all(|k| allowed.contains(&k.as_str()))
    );
}

#[tokio::test]
async fn dev_mode_runs_unsigned_calls() {
    let fx = fixture(ServeMode::Dev, None).await;
    let body = call_body(sync_event(), 0);
    let (status, _, reply) = call(&fx, "calendar-agent-sync-calendar", &body, None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["synced"], "u1");
    let reply: Value = reqwest::get(format!("{}/api/inngest", fx.app))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["mode"], "dev");
    assert_eq!(reply["has_signing_key"], false);
}
