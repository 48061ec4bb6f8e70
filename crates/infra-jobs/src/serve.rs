//! The app's `/api/inngest` endpoint, as Inngest's SDK specification
//! (github.com/inngest/inngest, `docs/SDK_SPEC.md`) has an SDK serve it:
//!
//! - `GET` introspection (§4.5): function count, key presence, mode; the key hashes only to a
//!   correctly signed request.
//! - `PUT` sync (§4.3): registers the app's functions with `POST {api}/fn/register`,
//!   authorized by the hashed signing key (the fallback key on 401/403), and answers
//!   `{message, modified}` — 200 on success, 500 with Inngest's error otherwise.
//! - `POST` call (§4.4): verifies `X-Inngest-Signature` (500 when it fails, §4.1.3), runs the
//!   function named by `fnId` on the event through [`JobsRuntime::invoke`], and answers
//!   200 with its output; a retryable failure 500 with `X-Inngest-No-Retry: false` (and
//!   `Retry-After` when the function asked for a delay); a non-retryable failure 400 with
//!   `X-Inngest-No-Retry: true` (§4.4.3). Every reply carries `X-Inngest-SDK` and
//!   `X-Inngest-Req-Version: 1` (§4.1.2). Functions are single-step.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use infra_core::{Error, ErrorKind, Event, Result, redact_url};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::function::{Function, Trigger};
use crate::health_probe::PROBE_FUNCTION_ID;
use crate::outcome::Outcome;
use crate::runtime::JobsRuntime;
use crate::serve_config::{ServeConfig, ServeMode};
use crate::signing::{SIGNATURE_HEADER, SigningKey};

/// `X-Inngest-SDK` of every request and reply: `<sdk name>:v<semver>` (§4.1.1).
pub const SDK_HEADER_VALUE: &str = concat!("infra-jobs:v", env!("CARGO_PKG_VERSION"));
/// The execution version this handler speaks (§4.1.2).
pub const REQ_VERSION: &str = "1";

const HEADER_SDK: &str = "x-inngest-sdk";
const HEADER_REQ_VERSION: &str = "x-inngest-req-version";
const HEADER_NO_RETRY: &str = "x-inngest-no-retry";
const HEADER_SERVER_KIND: &str = "x-inngest-server-kind";
const HEADER_EXPECTED_SERVER_KIND: &str = "x-inngest-expected-server-kind";
const HEADER_FRAMEWORK: &str = "x-inngest-framework";
const FRAMEWORK: &str = "axum";

struct Serve {
    runtime: JobsRuntime,
    config: ServeConfig,
    http: reqwest::Client,
}

/// The router answering `GET`, `PUT` and `POST` at `config.serve_path`, running functions
/// on `runtime`.
///
/// ```no_run
/// # fn demo(runtime: infra_jobs::JobsRuntime) -> infra_core::Result<()> {
/// use infra_core::Env;
/// use infra_jobs::{ServeConfig, serve_router};
///
/// let config = ServeConfig::from_env(&Env::process(), "calendar-agent")?;
/// let app: axum::Router = serve_router(runtime, config)?;
/// # Ok(()) }
/// ```
pub fn serve_router(runtime: JobsRuntime, config: ServeConfig) -> Result<Router> {
    let http = reqwest::Client::builder()
        .timeout(config.timeout)
        .build()
        .map_err(|e| Error::backend("cannot build the HTTP client").with_source(e))?;
    let path = config.serve_path.clone();
    let serve = Arc::new(Serve {
        runtime,
        config,
        http,
    });
    Ok(Router::new()
        .route(&path, get(introspect).put(sync).post(call))
        .with_state(serve))
}

/// The functions Inngest runs: all but the runtime's built-in health probe.
fn served_functions(runtime: &JobsRuntime) -> Vec<Arc<Function>> {
    runtime
        .functions()
        .iter()
        .filter(|f| f.id() != PROBE_FUNCTION_ID)
        .cloned()
        .collect()
}

/// A JSON reply with the headers every reply to Inngest carries.
fn reply(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(HEADER_SDK, HeaderValue::from_static(SDK_HEADER_VALUE));
    headers.insert(HEADER_REQ_VERSION, HeaderValue::from_static(REQ_VERSION));
    headers.insert(HEADER_FRAMEWORK, HeaderValue::from_static(FRAMEWORK));
    response
}

/// A failed call or a refused request: `{name, message}`, retryable unless `no_retry`.
fn error_reply(status: StatusCode, name: &str, message: &str, no_retry: bool) -> Response {
    let mut response = reply(status, json!({"name": name, "message": message}));
    response.headers_mut().insert(
        HEADER_NO_RETRY,
        HeaderValue::from_static(if no_retry { "true" } else { "false" }),
    );
    response
}

impl Serve {
    /// Checks the signature of a request from Inngest (§4.1.3). In dev mode nothing is
    /// verified (§4.2.2); in cloud mode a missing key or a bad signature refuses the request.
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<()> {
        if self.config.mode == ServeMode::Dev {
            return Ok(());
        }
        let Some(keys) = &self.config.signing_keys else {
            return Err(Error::config(
                crate::signing::SIGNING_KEY_VAR,
                "is not set: the request cannot be verified",
            ));
        };
        let header = headers
            .get(SIGNATURE_HEADER)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        keys.verify(header, body).map(|_| ())
    }

    /// Sends an authorized request to Inngest's API: the hashed signing key as bearer token,
    /// retried with the fallback key on 401/403 (§3.1, §4.1.4). In dev mode without a key
    /// the request goes without one.
    async fn authorized(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let keys = self.config.signing_keys.as_ref();
        let mut candidates: Vec<Option<&SigningKey>> = match keys {
            Some(keys) => std::iter::once(keys.primary())
                .chain(keys.fallback())
                .map(Some)
                .collect(),
            None => vec![None],
        };
        let last = candidates.len() - 1;
        for (i, key) in candidates.drain(..).enumerate() {
            let mut request = build()
                .header(HEADER_SDK, SDK_HEADER_VALUE)
                .header(HEADER_REQ_VERSION, REQ_VERSION);
            if let Some(key) = key {
                request = request.bearer_auth(key.hashed()?.expose());
            }
            let response = request.send().await.map_err(|e| {
                let e = e.without_url();
                let api = redact_url(self.config.api_base_url.as_str());
                if e.is_timeout() {
                    Error::timeout(&format!("Inngest API call to {api}"), self.config.timeout)
                        .with_source(e)
                } else {
                    Error::unavailable(format!("cannot reach Inngest's API at {api}"))
                        .with_source(e)
                }
            })?;
            let denied = matches!(response.status().as_u16(), 401 | 403);
            if !denied || i == last {
                return Ok(response);
            }
        }
        unreachable!("the loop returns on its last candidate")
    }

    fn api_url(&self, path: &str) -> Result<url::Url> {
        let base = self.config.api_base_url.as_str().trim_end_matches('/');
        url::Url::parse(&format!("{base}{path}")).map_err(|e| {
            Error::config("INNGEST_API_BASE_URL", format_args!("gives a bad URL: {e}"))
        })
    }

    /// The public URL of this handler: `INNGEST_SERVE_ORIGIN` + path, else from the request.
    fn serve_url(&self, headers: &HeaderMap) -> Result<url::Url> {
        let path = &self.config.serve_path;
        if let Some(origin) = &self.config.serve_origin {
            let origin = origin.as_str().trim_end_matches('/');
            return url::Url::parse(&format!("{origin}{path}")).map_err(|e| {
                Error::config("INNGEST_SERVE_ORIGIN", format_args!("gives a bad URL: {e}"))
            });
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let host = header("x-forwarded-host")
            .or_else(|| header("host"))
            .ok_or_else(|| {
                Error::config(
                    "INNGEST_SERVE_ORIGIN",
                    "is not set and the sync request has no Host header",
                )
            })?;
        let proto = header("x-forwarded-proto").unwrap_or("http");
        url::Url::parse(&format!("{proto}://{host}{path}"))
            .map_err(|e| Error::invalid_input("Host", format_args!("does not make a URL: {e}")))
    }

    /// The sync payload (§4.3.2).
    fn register_payload(&self, url: &url::Url) -> Value {
        let app = &self.config.app_id;
        let functions: Vec<Value> = served_functions(&self.runtime)
            .iter()
            .map(|f| {
                let composite = format!("{app}-{}", f.id());
                let mut step_url = url.clone();
                step_url
                    .query_pairs_mut()
                    .append_pair("fnId", &composite)
                    .append_pair("stepId", "step");
                let triggers: Vec<Value> = f
                    .triggers()
                    .iter()
                    .map(|t| match t {
                        Trigger::Event(name) => json!({"event": name}),
                        Trigger::Cron(schedule) => json!({"cron": schedule.expression()}),
                    })
                    .collect();
                let mut function = json!({
                    "id": composite,
                    "name": f.name(),
                    "triggers": triggers,
                    "steps": {"step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {"type": "http", "url": step_url.as_str()},
                        "retries": {"attempts": f.options().max_attempts()},
                    }},
                });
                add_flow_control(&mut function, f);
                function
            })
            .collect();
        json!({
            "url": url.as_str(),
            "deployType": "ping",
            "appName": app,
            "sdk": SDK_HEADER_VALUE,
            "v": "0.1",
            "framework": FRAMEWORK,
            "functions": functions,
        })
    }
}

/// The function's concurrency, idempotency and debounce options in the sync payload's terms
/// (§4.3.2), so Inngest applies the limits our runtime would. Keys become CEL expressions.
/// Inngest's idempotency window is its own (24 hours); priority has no static equivalent.
fn add_flow_control(function: &mut Value, f: &Function) {
    let options = f.options();
    if !options.concurrency.is_empty() {
        let limits: Vec<Value> = options
            .concurrency
            .iter()
            .map(|c| match &c.key {
                Some(key) => json!({"limit": c.limit, "key": key.to_expression()}),
                None => json!({"limit": c.limit}),
            })
            .collect();
        function["concurrency"] = Value::Array(limits);
    }
    if let Some(idempotency) = &options.idempotency {
        function["idempotency"] = Value::String(idempotency.key.to_expression());
    }
    if let Some(debounce) = &options.debounce {
        let mut value = json!({"period": time_string(debounce.period)});
        if let Some(key) = &debounce.key {
            value["key"] = Value::String(key.to_expression());
        }
        function["debounce"] = value;
    }
}

/// A Time String (§1.3.2): whole seconds as `5s`, anything finer in milliseconds.
fn time_string(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn query_param(query: &Option<String>, name: &str) -> Option<String> {
    let query = query.as_deref()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `GET`: introspection (§4.5).
async fn introspect(State(serve): State<Arc<Serve>>, headers: HeaderMap) -> Response {
    let config = &serve.config;
    let signed = config.mode == ServeMode::Cloud
        && headers.contains_key(SIGNATURE_HEADER)
        && serve.verify(&headers, b"").is_ok();
    let mut body = json!({
        "function_count": served_functions(&serve.runtime).len(),
        "has_event_key": config.has_event_key,
        "has_signing_key": config.signing_keys.is_some(),
        "mode": config.mode.as_str(),
        "extra": {"authentication_succeeded": signed, "sdk": SDK_HEADER_VALUE},
    });
    if signed && let Some(keys) = &config.signing_keys {
        let hash = |k: Option<&SigningKey>| {
            k.and_then(|k| k.hashed().ok())
                .map(|h| Value::String(h.into_inner()))
                .unwrap_or(Value::Null)
        };
        body["signing_key_hash"] = hash(Some(keys.primary()));
        body["signing_key_fallback_hash"] = hash(keys.fallback());
    }
    reply(StatusCode::OK, body)
}

/// Inngest's reply to a sync: `{ok, modified?}` or `{error}`.
#[derive(Deserialize)]
struct RegisterReply {
    #[serde(default)]
    modified: bool,
    #[serde(default)]
    error: Option<String>,
}

/// `PUT`: sync the app's functions with Inngest (§4.3).
async fn sync(
    State(serve): State<Arc<Serve>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let failed = |message: String| {
        tracing::warn!(%message, "Inngest sync failed");
        reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": message, "modified": false}),
        )
    };
    let url = match serve.serve_url(&headers) {
        Ok(url) => url,
        Err(err) => return failed(err.to_string()),
    };
    let payload = serve.register_payload(&url);
    let mut register = match serve.api_url("/fn/register") {
        Ok(u) => u,
        Err(err) => return failed(err.to_string()),
    };
    if let Some(deploy_id) = query_param(&query, "deployId") {
        register
            .query_pairs_mut()
            .append_pair("deployId", &deploy_id);
    }
    let expected_kind = headers
        .get(HEADER_SERVER_KIND)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = serve
        .authorized(|| {
            let mut request = serve
                .http
                .post(register.clone())
                .header(HEADER_FRAMEWORK, FRAMEWORK)
                .json(&payload);
            if let Some(kind) = &expected_kind {
                request = request.header(HEADER_EXPECTED_SERVER_KIND, kind);
            }
            request
        })
        .await;
    let response = match response {
        Ok(r) => r,
        Err(err) => return failed(err.to_string()),
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let parsed: Option<RegisterReply> = serde_json::from_str(&text).ok();
    if status.is_success() {
        let modified = parsed.map(|r| r.modified).unwrap_or(false);
        tracing::info!(modified, "synced the app with Inngest");
        return reply(
            StatusCode::OK,
            json!({"message": "Successfully synced.", "modified": modified}),
        );
    }
    let reason = parsed
        .and_then(|r| r.error)
        .unwrap_or_else(|| text.chars().take(200).collect());
    failed(format!("Inngest replied {status}: {}", reason.trim()))
}

/// The body of a call request (§4.4.1); only what a single-step function needs.
#[derive(Deserialize)]
struct CallRequest {
    event: Option<Value>,
    #[serde(default)]
    ctx: CallContext,
}

#[derive(Deserialize, Default)]
struct CallContext {
    #[serde(default)]
    run_id: String,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    use_api: bool,
}

/// `POST`: run a function (§4.4).
async fn call(
    State(serve): State<Arc<Serve>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let internal = |name: &str, message: &str| {
        error_reply(StatusCode::INTERNAL_SERVER_ERROR, name, message, false)
    };
    let Ok(body) = to_bytes(body, serve.config.max_body_bytes).await else {
        return internal(
            "BodyError",
            "the call request's body is too large or unreadable",
        );
    };
    if let Err(err) = serve.verify(&headers, &body) {
        // §4.1.3: a request that fails verification is refused with 500.
        tracing::warn!(error = %err, "refused a call request");
        return internal("SignatureError", err.message());
    }
    let Some(fn_id) = query_param(&query, "fnId") else {
        return internal("FunctionNotFound", "the call request has no `fnId`");
    };
    let prefix = format!("{}-", serve.config.app_id);
    let id = fn_id.strip_prefix(&prefix).unwrap_or(&fn_id);
    if id == PROBE_FUNCTION_ID || serve.runtime.functions().get(id).is_none() {
        return internal(
            "FunctionNotFound",
            &format!("no function `{fn_id}` in app `{}`", serve.config.app_id),
        );
    }
    let request: CallRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return internal("BodyError", &format!("the call request is not valid: {e}")),
    };
    let event = if request.ctx.use_api {
        match fetch_batch_event(&serve, &request.ctx.run_id).await {
            Ok(event) => event,
            Err(err) => return internal("ApiError", &err.to_string()),
        }
    } else {
        request.event.unwrap_or(Value::Null)
    };
    let event: Event = match serde_json::from_value(event) {
        Ok(e) => e,
        Err(e) => {
            return internal(
                "BodyError",
                &format!("the call request's event is not an event: {e}"),
            );
        }
    };
    // Inngest counts attempts from 0; our handlers from 1.
    let attempt = request.ctx.attempt.saturating_add(1);
    let outcome = match serve
        .runtime
        .invoke(id, event, attempt, &request.ctx.run_id)
        .await
    {
        Ok(outcome) => outcome,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return internal("FunctionNotFound", err.message());
        }
        Err(err) => return internal("Error", err.message()),
    };
    outcome_reply(outcome)
}

/// The reply for a function's outcome (§4.4.3).
fn outcome_reply(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Success(output) => reply(StatusCode::OK, output),
        Outcome::Retry { error, after } => {
            let mut response =
                error_reply(StatusCode::INTERNAL_SERVER_ERROR, "Error", &error, false);
            if let Some(after) = after {
                // Whole seconds, rounded up: retrying early would only fail again.
                let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(secs.max(1)));
            }
            response
        }
        Outcome::Fail { error } => {
            error_reply(StatusCode::BAD_REQUEST, "NonRetriableError", &error, true)
        }
    }
}

/// The run's events from Inngest's API when the call request was trimmed (`ctx.use_api`,
/// §4.4.2); the first is the function's event.
async fn fetch_batch_event(serve: &Serve, run_id: &str) -> Result<Value> {
    if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::invalid_input("ctx.run_id", "must be a run id"));
    }
    let url = serve.api_url(&format!("/v0/runs/{run_id}/batch"))?;
    let response = serve.authorized(|| serve.http.get(url.clone())).await?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::new(
            ErrorKind::from_http_status(status.as_u16()),
            format!("Inngest's API replied {status} to the batch request"),
        ));
    }
    let events: Vec<Value> = response.json().await.map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            "Inngest's batch reply is not a list of events",
        )
        .with_source(e)
    })?;
    events
        .into_iter()
        .next()
        .ok_or_else(|| Error::new(ErrorKind::Decode, "Inngest's batch reply has no event"))
}
