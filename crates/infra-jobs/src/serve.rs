//! The app's `/api/inngest` endpoint, as Inngest's SDK specification
//! (github.com/inngest/inngest, `docs/SDK_SPEC.md`) has an SDK serve it:
//!
//! - `GET` introspection (§4.5): function count, key presence, mode; the key hashes only to a
//!   correctly signed request.
//! - `PUT` sync (§4.3), in one of two kinds, as the official `inngest` npm SDK (v4) does:
//!   - **in-band** (`X-Inngest-Sync-Kind: in_band`, Inngest's own request): the body
//!     `{"url": …}` is verified against `X-Inngest-Signature` like a call, and the reply *is*
//!     the registration (signed with the key that verified the request), for the URL Inngest
//!     reached the app at — or `INNGEST_SERVE_ORIGIN` + path when that is set. 401 when the
//!     signature fails, 400 for a body that is not such a request.
//!   - **out-of-band** (any other `PUT`): registers the app's functions with
//!     `POST {api}/fn/register`, authorized by the hashed signing key (the fallback key on
//!     401/403), and answers `{message, modified}` — 200 on success, 500 with Inngest's
//!     error otherwise. The registered URL is `INNGEST_SERVE_ORIGIN` + path, never one built
//!     from the request's `Host` or `X-Forwarded-*` headers (anyone can send a `PUT`): without
//!     `INNGEST_SERVE_ORIGIN` the sync fails with a configuration error naming it.
//! - `POST` call (§4.4): checks that `X-Inngest-Signature` is present, well formed and within
//!   five minutes *before* reading the body (500 otherwise, §4.1.3), refuses a body over
//!   [`ServeConfig::max_body_bytes`] with 413 unread, then verifies the signature over the
//!   body (500 when it fails), runs the function named by `fnId` on the event, and answers
//!   200 with its output; a retryable failure 500 with
//!   `X-Inngest-No-Retry: false` (and
//!   `Retry-After` when the function asked for a delay); a non-retryable failure 400 with
//!   `X-Inngest-No-Retry: true` (§4.4.3). Every reply carries `X-Inngest-SDK` and
//!   `X-Inngest-Req-Version: 2` (§4.1.2).
//! - Steps (§5, [`inngest_call`](crate::inngest_call)): the request's memoized `steps` are the
//!   execution's memo; the first new step runs at once and is reported as `StepRun` (or
//!   `StepError`) in a `206` reply, or is reported as `StepPlanned` when immediate execution
//!   is off, or, with `stepId` naming it, runs then; sleeps, waits and invocations are
//!   reported as `Sleep`, `WaitForEvent` and `InvokeFunction`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use infra_core::{Error, ErrorKind, Event, Result, redact_url};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bounded_body::read_bounded;
use crate::function::Function;
use crate::health_probe::PROBE_FUNCTION_ID;
use crate::inngest_call::{CallRequest, event_of, inngest_run, memo_of};
use crate::outcome::Outcome;
use crate::runtime::{InngestExecution, JobsRuntime};
use crate::serve_config::{SERVE_MAX_BODY_VAR, ServeConfig, ServeMode};
use crate::signing::{SIGNATURE_HEADER, SIGNATURE_MAX_AGE, SignatureHeader, SigningKey};
use crate::step_plan::{Execution, Interrupt};
pub use crate::sync_payload::SDK_HEADER_VALUE;
use crate::sync_payload::{FRAMEWORK, in_band_reply, parse_in_band_request, register_payload};

/// The execution version this handler speaks (§4.1.2).
pub const REQ_VERSION: &str = "2";

const HEADER_SDK: &str = "x-inngest-sdk";
const HEADER_REQ_VERSION: &str = "x-inngest-req-version";
const HEADER_NO_RETRY: &str = "x-inngest-no-retry";
const HEADER_SERVER_KIND: &str = "x-inngest-server-kind";
const HEADER_EXPECTED_SERVER_KIND: &str = "x-inngest-expected-server-kind";
const HEADER_FRAMEWORK: &str = "x-inngest-framework";
const HEADER_SYNC_KIND: &str = "x-inngest-sync-kind";
const HEADER_ENV: &str = "x-inngest-env";
const SYNC_IN_BAND: &str = "in_band";
const SYNC_OUT_OF_BAND: &str = "out_of_band";
/// The largest in-band sync request: its body is one URL.
const IN_BAND_MAX_BODY: usize = 64 * 1024;

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
/// let config = ServeConfig::from_env(&Env::process(), "billing-app")?;
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
    add_sdk_headers(&mut response);
    response
}

/// The headers every reply to Inngest carries (§4.1.2).
fn add_sdk_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(HEADER_SDK, HeaderValue::from_static(SDK_HEADER_VALUE));
    headers.insert(HEADER_REQ_VERSION, HeaderValue::from_static(REQ_VERSION));
    headers.insert(HEADER_FRAMEWORK, HeaderValue::from_static(FRAMEWORK));
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
    /// What can be checked of a request's `X-Inngest-Signature` before its body is read
    /// (§4.1.3): a signing key to check it with, the header present, well formed, and its
    /// timestamp within [`SIGNATURE_MAX_AGE`] of now. Nothing to check in dev mode (§4.2.2).
    /// A request failing this is refused without reading its body.
    fn precheck_signature(&self, headers: &HeaderMap) -> Result<()> {
        if self.config.mode == ServeMode::Dev {
            return Ok(());
        }
        if self.config.signing_keys.is_none() {
            return Err(Error::config(
                crate::signing::SIGNING_KEY_VAR,
                "is not set: the request cannot be verified",
            ));
        }
        let Some(value) = headers.get(SIGNATURE_HEADER) else {
            return Err(Error::invalid_input(SIGNATURE_HEADER, "is missing"));
        };
        let value = value.to_str().map_err(|_| {
            Error::invalid_input(
                SIGNATURE_HEADER,
                "is not text: must be `t=<unix seconds>&s=<hex>`",
            )
        })?;
        let header = SignatureHeader::parse(value)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let age = now.saturating_sub(header.timestamp);
        if age.unsigned_abs() > SIGNATURE_MAX_AGE.as_secs() {
            return Err(Error::invalid_input(
                SIGNATURE_HEADER,
                format_args!(
                    "is {} by {age}s, beyond the {}s window",
                    if age >= 0 { "stale" } else { "from the future" },
                    SIGNATURE_MAX_AGE.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Checks the signature of a request from Inngest over its whole `body` (§4.1.3) and
    /// returns the key that matched; `None` in dev mode, where nothing is verified (§4.2.2).
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<Option<&SigningKey>> {
        if self.config.mode == ServeMode::Dev {
            return Ok(None);
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
        keys.verify(header, body).map(Some)
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

    /// The public URL of this handler, `INNGEST_SERVE_ORIGIN` + path. Never derived from the
    /// request: its `Host` and `X-Forwarded-*` headers are whatever the sender wrote.
    fn configured_serve_url(&self) -> Result<Option<url::Url>> {
        let Some(origin) = &self.config.serve_origin else {
            return Ok(None);
        };
        let origin = origin.as_str().trim_end_matches('/');
        let path = &self.config.serve_path;
        url::Url::parse(&format!("{origin}{path}"))
            .map(Some)
            .map_err(|e| {
                Error::config("INNGEST_SERVE_ORIGIN", format_args!("gives a bad URL: {e}"))
            })
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
    let signed = serve.config.mode == ServeMode::Cloud
        && headers.contains_key(SIGNATURE_HEADER)
        && serve.verify(&headers, b"").is_ok();
    reply(StatusCode::OK, introspection(&serve, signed))
}

/// The introspection body (§4.5); key hashes only for a verified request.
fn introspection(serve: &Serve, signed: bool) -> Value {
    let config = &serve.config;
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
    body
}

/// Inngest's reply to a sync: `{ok, modified?}` or `{error}`.
#[derive(Deserialize)]
struct RegisterReply {
    #[serde(default)]
    modified: bool,
    #[serde(default)]
    error: Option<String>,
}

/// A sync reply, with the kind of sync it was.
fn sync_reply(status: StatusCode, body: Value, kind: &'static str) -> Response {
    let mut response = reply(status, body);
    response
        .headers_mut()
        .insert(HEADER_SYNC_KIND, HeaderValue::from_static(kind));
    response
}

/// `PUT`: sync the app's functions with Inngest (§4.3), in-band when Inngest asks for it.
async fn sync(
    State(serve): State<Arc<Serve>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let in_band = headers
        .get(HEADER_SYNC_KIND)
        .is_some_and(|v| v.as_bytes() == SYNC_IN_BAND.as_bytes());
    if in_band {
        in_band_sync(&serve, &headers, body).await
    } else {
        out_of_band_sync(&serve, &headers, query).await
    }
}

/// In-band: verify Inngest's signed `{"url": …}` and answer with the registration, signed.
async fn in_band_sync(serve: &Serve, headers: &HeaderMap, body: Body) -> Response {
    let refused = |status: StatusCode, err: &Error| {
        tracing::warn!(error = %err, "refused an in-band sync request");
        let code = if status == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "invalid_request"
        };
        sync_reply(
            status,
            json!({"code": code, "message": err.to_string()}),
            SYNC_IN_BAND,
        )
    };
    if let Err(err) = serve.precheck_signature(headers) {
        return refused(StatusCode::UNAUTHORIZED, &err);
    }
    let body = match read_bounded(
        headers,
        body,
        IN_BAND_MAX_BODY,
        "the in-band request's bound",
    )
    .await
    {
        Ok(body) => body,
        Err((status, err)) => return refused(status, &err),
    };
    let key = match serve.verify(headers, &body) {
        Ok(key) => key,
        Err(err) => return refused(StatusCode::UNAUTHORIZED, &err),
    };
    let reached_at = match parse_in_band_request(&body) {
        Ok(url) => url,
        Err(err) => return refused(StatusCode::BAD_REQUEST, &err),
    };
    // The operator's origin wins over the URL Inngest used, as for out-of-band syncs.
    let url = match serve.configured_serve_url() {
        Ok(Some(configured)) => configured,
        Ok(None) => reached_at,
        Err(err) => return refused(StatusCode::INTERNAL_SERVER_ERROR, &err),
    };
    let env = headers.get(HEADER_ENV).and_then(|v| v.to_str().ok());
    let mut inspection = introspection(serve, key.is_some());
    inspection["authentication_succeeded"] = Value::Bool(key.is_some());
    let registration = in_band_reply(
        &serve.config.app_id,
        &served_functions(&serve.runtime),
        &url,
        inspection,
        env,
    );
    let bytes = registration.to_string();
    let mut response = (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes.clone(),
    )
        .into_response();
    add_sdk_headers(&mut response);
    response
        .headers_mut()
        .insert(HEADER_SYNC_KIND, HeaderValue::from_static(SYNC_IN_BAND));
    if let Some(key) = key {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        if let Ok(signature) = HeaderValue::from_str(&key.header_value(bytes.as_bytes(), now)) {
            response.headers_mut().insert(SIGNATURE_HEADER, signature);
        }
    }
    tracing::info!(url = %url, "answered Inngest's in-band sync");
    response
}

/// Out-of-band: register `INNGEST_SERVE_ORIGIN` + path with `POST {api}/fn/register`.
async fn out_of_band_sync(serve: &Serve, headers: &HeaderMap, query: Option<String>) -> Response {
    let failed = |message: String| {
        tracing::warn!(%message, "Inngest sync failed");
        sync_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": message, "modified": false}),
            SYNC_OUT_OF_BAND,
        )
    };
    let url = match serve.configured_serve_url() {
        Ok(Some(url)) => url,
        Ok(None) => {
            return failed(
                Error::config(
                    "INNGEST_SERVE_ORIGIN",
                    "is not set: an out-of-band sync (a PUT that is not Inngest's signed \
                     in-band request) registers the app's public origin, which is never taken \
                     from the request's Host or X-Forwarded-* headers; set it, or sync from \
                     Inngest's dashboard (in-band)",
                )
                .to_string(),
            );
        }
        Err(err) => return failed(err.to_string()),
    };
    let payload = register_payload(
        &serve.config.app_id,
        &served_functions(&serve.runtime),
        &url,
    );
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
                .header(HEADER_SYNC_KIND, SYNC_OUT_OF_BAND)
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
        return sync_reply(
            StatusCode::OK,
            json!({"message": "Successfully synced.", "modified": modified}),
            SYNC_OUT_OF_BAND,
        );
    }
    let reason = parsed
        .and_then(|r| r.error)
        .unwrap_or_else(|| text.chars().take(200).collect());
    failed(format!("Inngest replied {status}: {}", reason.trim()))
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
    // Refused before the body is read: a sender without a fresh, well-formed signature header
    // cannot make the server buffer anything.
    if let Err(err) = serve.precheck_signature(&headers) {
        tracing::warn!(error = %err, "refused a call request");
        return internal("SignatureError", &err.to_string());
    }
    let body = match read_bounded(
        &headers,
        body,
        serve.config.max_body_bytes,
        SERVE_MAX_BODY_VAR,
    )
    .await
    {
        Ok(body) => body,
        Err((status, err)) => return error_reply(status, "BodyError", &err.to_string(), false),
    };
    if let Err(err) = serve.verify(&headers, &body) {
        // §4.1.3: a request that fails verification is refused with 500.
        tracing::warn!(error = %err, "refused a call request");
        return internal("SignatureError", &err.to_string());
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
    let batch: Vec<Event> = request
        .events
        .iter()
        .filter_map(|e| serde_json::from_value(e.clone()).ok())
        .collect();
    let (event, steps) = if request.ctx.use_api {
        let fetched = async {
            let event = fetch_batch_event(&serve, &request.ctx.run_id).await?;
            let steps = fetch_run_steps(&serve, &request.ctx.run_id).await?;
            Ok::<_, Error>((event, steps))
        };
        match fetched.await {
            Ok(fetched) => fetched,
            Err(err) => return internal("ApiError", &err.to_string()),
        }
    } else {
        (request.event.unwrap_or(Value::Null), request.steps)
    };
    let event: Event = match event_of(event) {
        Ok(e) => e,
        Err(e) => {
            return internal(
                "BodyError",
                &format!("the call request's event is not an event: {e}"),
            );
        }
    };
    let run = inngest_run(
        query_param(&query, "stepId"),
        &request.ctx,
        &serve.config.app_id,
        serve.runtime.forward_sender(),
    );
    // Inngest counts attempts from 0; our handlers from 1.
    let attempt = request.ctx.attempt.saturating_add(1);
    let execution = serve
        .runtime
        .execute_inngest(
            id,
            InngestExecution {
                event,
                events: batch,
                attempt,
                run_id: request.ctx.run_id.clone(),
                memo: memo_of(steps),
            },
            run,
        )
        .await;
    match execution {
        Ok(Execution::Finished(outcome)) => outcome_reply(outcome),
        Ok(Execution::Interrupted(Interrupt::Report(op))) => {
            reply(StatusCode::PARTIAL_CONTENT, Value::Array(vec![op]))
        }
        Ok(Execution::Interrupted(other)) => internal("Error", &format!("{other:?}")),
        Err(err) if err.kind() == ErrorKind::NotFound => {
            internal("FunctionNotFound", err.message())
        }
        Err(err) => internal("Error", err.message()),
    }
}

/// The run's memoized steps from Inngest's API when the call request was trimmed
/// (`ctx.use_api`, §4.4.2).
async fn fetch_run_steps(serve: &Serve, run_id: &str) -> Result<HashMap<String, Value>> {
    if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::invalid_input("ctx.run_id", "must be a run id"));
    }
    let url = serve.api_url(&format!("/v0/runs/{run_id}/actions"))?;
    let response = serve.authorized(|| serve.http.get(url.clone())).await?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::new(
            ErrorKind::from_http_status(status.as_u16()),
            format!("Inngest's API replied {status} to the actions request"),
        ));
    }
    response.json().await.map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            "Inngest's actions reply is not a map of steps",
        )
        .with_source(e)
    })
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
