//! The ingestion route: an Inngest-compatible `POST /e/{event_key}` in front of our own
//! runtime, so apps using Inngest's official SDKs send events into it by changing only
//! their event API base URL.
//!
//! It answers as Inngest's Event API does: `{"ids": [...], "status": 200}`, or
//! `{"error": "...", "status": N}` with 401 for an unknown key, 400 for a body that is not
//! JSON or holds an invalid event, 413 for an oversized body. A request is validated whole
//! before anything is enqueued, so a rejected request enqueues nothing.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use infra_core::{
    Env, Error, ErrorKind, Event, EventSender, Result, Secret, constant_time_eq, sha256_hex,
};
use serde_json::{Value, json};

use crate::bounded_body::read_bounded;

/// The variable listing accepted event keys, comma separated.
pub const INGEST_KEYS_VAR: &str = "INFRA_JOBS_INGEST_KEYS";
/// The variable bounding a request's body, in bytes.
pub const INGEST_MAX_BODY_VAR: &str = "INFRA_JOBS_INGEST_MAX_BODY_BYTES";
/// The default body bound: 1 MiB.
pub const DEFAULT_INGEST_MAX_BODY: usize = 1024 * 1024;

/// Settings of the ingestion route.
#[derive(Clone)]
#[non_exhaustive]
pub struct IngestConfig {
    /// SHA-256 of every accepted key: compared in constant time, and the keys themselves are
    /// not kept around.
    key_hashes: Vec<Secret<String>>,
    /// The largest body accepted (`INFRA_JOBS_INGEST_MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
}

impl IngestConfig {
    /// Accepts `keys`; empty keys are ignored.
    pub fn new<I, K>(keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        IngestConfig {
            key_hashes: keys
                .into_iter()
                .map(|k| k.as_ref().trim().to_owned())
                .filter(|k| !k.is_empty())
                .map(|k| Secret::new(sha256_hex(k.as_bytes())))
                .collect(),
            max_body_bytes: DEFAULT_INGEST_MAX_BODY,
        }
    }

    /// From `INFRA_JOBS_INGEST_KEYS` (required: a route accepting no key would refuse
    /// everything) and `INFRA_JOBS_INGEST_MAX_BODY_BYTES`.
    pub fn from_env(env: &Env) -> Result<Self> {
        env.required_secret(INGEST_KEYS_VAR)?;
        let mut config = IngestConfig::new(env.list(INGEST_KEYS_VAR));
        if config.key_hashes.is_empty() {
            return Err(Error::config(INGEST_KEYS_VAR, "lists no key"));
        }
        if let Some(max) = env.integer::<usize>(INGEST_MAX_BODY_VAR)? {
            if max == 0 {
                return Err(Error::config(INGEST_MAX_BODY_VAR, "must be at least 1"));
            }
            config.max_body_bytes = max;
        }
        Ok(config)
    }

    /// Whether `key` is accepted. Every configured key is compared, in constant time, so
    /// timing says nothing about which key or prefix was close.
    fn accepts(&self, key: &str) -> bool {
        let given = sha256_hex(key.as_bytes());
        self.key_hashes.iter().fold(false, |found, hash| {
            found | constant_time_eq(hash.expose().as_bytes(), given.as_bytes())
        })
    }
}

impl fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestConfig")
            .field(
                "keys",
                &format_args!("{} key(s), hidden", self.key_hashes.len()),
            )
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

struct IngestState {
    sender: Arc<dyn EventSender>,
    config: IngestConfig,
}

/// The router serving `POST /e/{event_key}`; events go to `sender` (the runtime). Mount it
/// at the root of a listener, or nest it: the SDKs append `/e/{key}` to their base URL.
///
/// ```
/// use std::sync::Arc;
/// use infra_jobs::{IngestConfig, JobsRuntime, MemoryQueue, ingest_router};
///
/// let runtime = JobsRuntime::new(Arc::new(MemoryQueue::new()));
/// let app: axum::Router = ingest_router(Arc::new(runtime), IngestConfig::new(["key-1"]));
/// ```
pub fn ingest_router(sender: Arc<dyn EventSender>, config: IngestConfig) -> Router {
    Router::new()
        .route("/e/{event_key}", post(ingest))
        .with_state(Arc::new(IngestState { sender, config }))
}

async fn ingest(
    State(state): State<Arc<IngestState>>,
    Path(event_key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !state.config.accepts(&event_key) {
        return reply_error(StatusCode::UNAUTHORIZED, "Event key not found".to_owned());
    }
    let bytes = match read_bounded(
        &headers,
        body,
        state.config.max_body_bytes,
        INGEST_MAX_BODY_VAR,
    )
    .await
    {
        Ok(bytes) => bytes,
        Err((status, err)) => return reply_error(status, err.message().to_owned()),
    };
    let events = match parse_events(&bytes) {
        Ok(events) => events,
        Err(err) => return reply_error(StatusCode::BAD_REQUEST, err.message().to_owned()),
    };
    let count = events.len();
    if count == 0 {
        return (
            StatusCode::OK,
            axum::Json(json!({"ids": [], "status": 200})),
        )
            .into_response();
    }
    // `send_many` validates the whole batch before enqueueing any of it.
    match state.sender.send_many(events).await {
        Ok(ids) => {
            tracing::debug!(count, "ingested events");
            (
                StatusCode::OK,
                axum::Json(json!({"ids": ids, "status": 200})),
            )
                .into_response()
        }
        Err(err) => {
            let status = match err.kind() {
                ErrorKind::InvalidInput | ErrorKind::Decode => StatusCode::BAD_REQUEST,
                ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::Unavailable | ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status.is_server_error() {
                tracing::warn!(error = %err, "ingestion could not enqueue events");
            }
            // The runtime names the bad event of a batch by its index.
            let reason = match err.context("index") {
                Some(index) => format!("event {index}: {}", err.message()),
                None => err.message().to_owned(),
            };
            reply_error(status, reason)
        }
    }
}

/// One event or an array of events; each must be an object with a valid name and data.
/// Every refusal is an invalid-input error; in a batch, its message starts with `event {i}: `
/// and its `index` context names the event.
fn parse_events(bytes: &[u8]) -> Result<Vec<Event>> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid_input("body", format_args!("is not JSON: {e}")))?;
    let (items, batch) = match value {
        Value::Array(items) => (items, true),
        item @ Value::Object(_) => (vec![item], false),
        _ => {
            return Err(Error::invalid_input(
                "body",
                "must be an event object or an array of events",
            ));
        }
    };
    let mut events = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let refuse = |reason: String| {
            let error = if batch {
                Error::new(ErrorKind::InvalidInput, format!("event {index}: {reason}"))
                    .with_context("index", index.to_string())
            } else {
                Error::new(ErrorKind::InvalidInput, reason)
            };
            error.with_context("field", "body")
        };
        if !item.is_object() {
            return Err(refuse("an event must be a JSON object".to_owned()));
        }
        let event: Event =
            serde_json::from_value(item).map_err(|e| refuse(format!("not an event: {e}")))?;
        event
            .validate()
            .map_err(|e| refuse(e.message().to_owned()))?;
        events.push(event);
    }
    Ok(events)
}

fn reply_error(status: StatusCode, error: String) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "status": status.as_u16()})),
    )
        .into_response()
}
