//! `/api/inngest` and `/e/{key}` against hostile clients (issue 19):
//!
//! - point 6: a sync never registers a URL taken from the request's headers; Inngest's signed
//!   in-band sync is answered with the registration itself, out-of-band sync needs
//!   `INNGEST_SERVE_ORIGIN`;
//! - point 12: a call without a usable signature header is refused before its body is read,
//!   and a body over the limit is refused with 413 without being read;
//! - properties: whatever the body and headers, the serve and ingestion endpoints answer with
//!   a typed error, never a panic.
#![cfg(feature = "serve")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use infra_core::{Event, EventSender, TypedEvent};
use infra_jobs::{
    Function, IngestConfig, JobContext, JobsRuntime, MemoryQueue, Outcome, ServeConfig, SigningKey,
    SigningKeys, ingest_router, serve_router,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

const APP: &str = "calendar-agent";
const KEY: &str = "signkey-test-12345678";
const PATIENCE: Duration = Duration::from_secs(30);

/// What the stand-in Inngest API received on `/fn/register`.
type Registered = Arc<Mutex<Vec<Value>>>;

async fn record_register(State(seen): State<Registered>, Json(body): Json<Value>) -> Json<Value> {
    seen.lock().unwrap().push(body);
    Json(json!({"ok": true, "modified": true}))
}

async fn listen(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The calendar agent's sync request, with the JSON keys the TypeScript module sends.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CalendarSyncRequested {
    user_id: String,
}

impl TypedEvent for CalendarSyncRequested {
    const NAME: &'static str = "calendar/sync.requested";
}

/// Hands every event the ingestion route sends to a channel the test reads.
struct Recorder(tokio::sync::mpsc::UnboundedSender<Event>);

#[async_trait::async_trait]
impl EventSender for Recorder {
    async fn send(&self, event: Event) -> infra_core::Result<String> {
        Ok(self.send_many(vec![event]).await?.remove(0))
    }
    async fn send_many(&self, events: Vec<Event>) -> infra_core::Result<Vec<String>> {
        let ids = (0..events.len()).map(|i| format!("event-{i}")).collect();
        for event in events {
            let _ = self.0.send(event);
        }
        Ok(ids)
    }
}

fn runtime() -> JobsRuntime {
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
    runtime
}

struct Fixture {
    app: SocketAddr,
    registered: Registered,
}

/// The serve handler in cloud mode with `KEY`, syncing with a stand-in API; `origin` is
/// `INNGEST_SERVE_ORIGIN`.
async fn fixture(origin: Option<&str>) -> Fixture {
    let registered = Registered::default();
    let api = listen(
        axum::Router::new()
            .route("/fn/register", post(record_register))
            .with_state(registered.clone()),
    )
    .await;
    let mut config = ServeConfig::new(APP, Some(SigningKeys::new(KEY)));
    config.api_base_url = url::Url::parse(&format!("http://{api}")).unwrap();
    config.serve_origin = origin.map(|o| url::Url::parse(o).unwrap());
    let app = listen(serve_router(runtime(), config).unwrap()).await;
    Fixture { app, registered }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn key() -> SigningKey {
    SigningKey::new("INNGEST_SIGNING_KEY", KEY)
}

#[tokio::test]
async fn a_sync_never_registers_a_url_from_the_requests_headers() {
    let fx = fixture(None).await;
    let response = reqwest::Client::new()
        .put(format!("http://{}/api/inngest", fx.app))
        .header("X-Forwarded-Host", "attacker.example")
        .header("X-Forwarded-Proto", "https")
        .header("Host", "attacker.example")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap();
    assert!(
        fx.registered.lock().unwrap().is_empty(),
        "registered {:?}",
        fx.registered.lock().unwrap()
    );
    assert_eq!(status, 500, "{reply}");
    assert_eq!(reply["modified"], false);
    let message = reply["message"].as_str().unwrap();
    assert!(message.contains("INNGEST_SERVE_ORIGIN"), "{message}");
}

#[tokio::test]
async fn with_a_configured_origin_an_out_of_band_sync_registers_that_origin() {
    let fx = fixture(Some("https://app.example.com")).await;
    let response = reqwest::Client::new()
        .put(format!("http://{}/api/inngest", fx.app))
        .header("X-Forwarded-Host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["x-inngest-sync-kind"],
        "out_of_band",
        "the SDK says which kind of sync it did"
    );
    let registered = fx.registered.lock().unwrap();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0]["url"], "https://app.example.com/api/inngest");
}

/// An in-band sync request as Inngest sends it: `{"url": …}`, signed.
async fn in_band(fx: &Fixture, body: &str, signature: Option<String>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .put(format!("http://{}/api/inngest", fx.app))
        .header("X-Inngest-Sync-Kind", "in_band")
        .header("X-Inngest-Server-Kind", "cloud")
        .header("content-type", "application/json")
        .header("X-Forwarded-Host", "attacker.example")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("X-Inngest-Signature", signature);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_signed_in_band_sync_is_answered_with_the_signed_registration() {
    let fx = fixture(None).await;
    let body = r#"{"url":"https://app.example.com/api/inngest"}"#;
    let response = in_band(&fx, body, Some(key().header_value(body.as_bytes(), now()))).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-inngest-sync-kind"], "in_band");
    let signature = response.headers()["x-inngest-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    let raw = response.bytes().await.unwrap();
    SigningKeys::new(KEY)
        .verify(Some(&signature), &raw)
        .expect("the reply is signed with the key that verified the request");
    let reply: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(reply["app_id"], APP);
    assert_eq!(reply["url"], "https://app.example.com/api/inngest");
    assert_eq!(reply["sdk"], infra_jobs::SDK_HEADER_VALUE);
    assert_eq!(reply["framework"], "axum");
    assert_eq!(reply["inspection"]["authentication_succeeded"], true);
    let functions = reply["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 1);
    assert_eq!(functions[0]["id"], "calendar-agent-sync-calendar");
    assert_eq!(
        functions[0]["steps"]["step"]["runtime"]["url"],
        "https://app.example.com/api/inngest?fnId=calendar-agent-sync-calendar&stepId=step"
    );
    assert!(
        !raw.windows(16).any(|w| w == b"attacker.example"),
        "no header made it into the registration"
    );
    assert!(
        fx.registered.lock().unwrap().is_empty(),
        "in-band: nothing is posted to Inngest"
    );
}

#[tokio::test]
async fn an_in_band_sync_that_is_not_signed_by_inngest_is_refused() {
    let fx = fixture(None).await;
    let body = r#"{"url":"https://attacker.example/api/inngest"}"#;
    let other = SigningKey::new("INNGEST_SIGNING_KEY", "signkey-test-abcdef00");
    for signature in [
        None,
        Some("t=1&s=00".to_owned()),
        Some(key().header_value(body.as_bytes(), now() - 3600)),
        Some(other.header_value(body.as_bytes(), now())),
        Some(key().header_value(br#"{"url":"https://app.example.com/"}"#, now())),
    ] {
        let response = in_band(&fx, body, signature.clone()).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 401, "{signature:?}: {text}");
        assert!(!text.contains("functions"), "{text}");
    }
    assert!(fx.registered.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_signed_in_band_sync_with_a_bad_body_gets_a_typed_error() {
    let fx = fixture(None).await;
    for body in [
        "",
        "not json",
        r#"{"url": 5}"#,
        r#"{"url":"not a url"}"#,
        r#"{"url":"https://app.example.com/api/inngest","extra":1}"#,
    ] {
        let response = in_band(&fx, body, Some(key().header_value(body.as_bytes(), now()))).await;
        let status = response.status().as_u16();
        let reply: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
    }
}

/// Writes a call request's head (and `first_bytes` of its body) on a raw socket, never the
/// rest of the body; returns the status line the server answers with, if any.
async fn call_head_only(
    app: SocketAddr,
    content_length: usize,
    signature: Option<&str>,
    first_bytes: &[u8],
) -> Option<String> {
    let mut stream = TcpStream::connect(app).await.unwrap();
    let mut head = format!(
        "POST /api/inngest?fnId=calendar-agent-sync-calendar&stepId=step HTTP/1.1\r\n\
         Host: x\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n"
    );
    if let Some(signature) = signature {
        head.push_str(&format!("X-Inngest-Signature: {signature}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first_bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await;
    match read {
        Ok(Ok(n)) if n > 0 => {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            Some(text.lines().next().unwrap_or_default().to_owned())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_usable_signature_is_refused_before_its_body_is_read() {
    let fx = fixture(None).await;
    let stale = format!("t={}&s={}", now() - 3600, "a".repeat(64));
    let future = format!("t={}&s={}", now() + 3600, "a".repeat(64));
    for signature in [
        None,
        Some("garbage"),
        Some("t=1700000000"),
        Some(stale.as_str()),
        Some(future.as_str()),
    ] {
        // 15 MiB announced, a few bytes sent: the answer must come without the rest.
        let status = call_head_only(fx.app, 15 * 1024 * 1024, signature, b"{\"event\":").await;
        let status = status
            .unwrap_or_else(|| panic!("{signature:?}: no answer while the body was still owed"));
        assert!(status.contains(" 500 "), "{signature:?}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_looking_call_over_the_body_limit_is_refused_unread() {
    let fx = fixture(None).await;
    let fresh = format!("t={}&s={}", now(), "a".repeat(64));
    let status = call_head_only(fx.app, 64 * 1024 * 1024, Some(&fresh), b"{").await;
    let status = status.expect("an answer while the body was still owed");
    assert!(status.contains(" 413 "), "{status}");
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Every JSON value up to a few levels deep, and the shapes an event body has.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("calendar/sync.requested")),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("data".to_owned()),
                    Just("id".to_owned()),
                    Just("ts".to_owned()),
                    Just("user".to_owned()),
                    Just("event".to_owned()),
                    Just("ctx".to_owned()),
                    Just("run_id".to_owned()),
                    Just("attempt".to_owned()),
                    Just("use_api".to_owned()),
                    Just("url".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body: raw bytes, or JSON that looks more or less like what the endpoint expects.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Calls and syncs carrying any body, signed or not, get an answer with a JSON body,
    /// never a panic (a panicking handler would drop the connection).
    #[test]
    fn serve_requests_never_panic(
        body in body(),
        fn_id in prop_oneof![Just("calendar-agent-sync-calendar".to_owned()), ".{0,20}"],
        sign in any::<bool>(),
        method in prop_oneof![Just("POST"), Just("PUT"), Just("GET")],
        in_band in any::<bool>(),
        signature_noise in ".{0,80}",
    ) {
        block_on(async {
            let config = ServeConfig::new(APP, Some(SigningKeys::new(KEY)));
            let app = serve_router(runtime(), config).unwrap();
            let signature = if sign {
                key().header_value(&body, now())
            } else {
                signature_noise.clone()
            };
            let mut request = Request::builder()
                .method(method)
                .uri(format!(
                    "/api/inngest?fnId={}&stepId=step",
                    url::form_urlencoded::byte_serialize(fn_id.as_bytes()).collect::<String>()
                ))
                .header("content-type", "application/json");
            if let Ok(value) = axum::http::HeaderValue::from_str(&signature) {
                request = request.header("X-Inngest-Signature", value);
            }
            if in_band {
                request = request.header("X-Inngest-Sync-Kind", "in_band");
            }
            let response = app
                .oneshot(request.body(Body::from(body.clone())).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            let reply: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {bytes:?}"));
            prop_assert!(reply.is_object(), "{}", reply);
            if !status.is_success() {
                let said = reply["message"].as_str().or(reply["error"].as_str());
                prop_assert!(said.is_some_and(|m| !m.is_empty()), "{} {}", status, reply);
            }
            Ok(())
        })?;
    }

    /// The ingestion route answers any body with 200 or a 4xx carrying `error`, and enqueues
    /// nothing unless it answered 200.
    #[test]
    fn ingestion_bodies_never_panic(body in body()) {
        block_on(async {
            let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
            let app = ingest_router(Arc::new(Recorder(tx)), IngestConfig::new(["key-1"]));
            let response = app
                .oneshot(
                    Request::post("/e/key-1")
                        .header("content-type", "application/json")
                        .body(Body::from(body.clone()))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            let reply: Value = serde_json::from_slice(&bytes).unwrap();
            if status == StatusCode::OK {
                prop_assert!(reply["ids"].is_array(), "{}", reply);
            } else {
                prop_assert!(status.is_client_error(), "{} {}", status, reply);
                prop_assert!(reply["error"].as_str().is_some_and(|m| !m.is_empty()), "{}", reply);
                prop_assert_eq!(reply["status"].as_u64(), Some(u64::from(status.as_u16())));
                prop_assert!(events.try_recv().is_err(), "a refused request enqueued an event");
            }
            Ok(())
        })?;
    }
}
