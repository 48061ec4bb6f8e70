//! A stand-in for Pusher's HTTP API that verifies every request with the crate's verifier.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post};
use infra_core::Secret;
use infra_realtime::signature;
use serde_json::{Value, json};

pub const KEY: &str = "278d425bdf160c739803";
pub const SECRET: &str = "7ad3773142a6692b25b8";

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// `Ok` when the signature verified, else the verifier's error.
    pub verdict: Result<(), String>,
    pub body: Value,
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

async fn api(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> (StatusCode, String) {
    let params: BTreeMap<String, String> = query.into_iter().collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secret = Secret::new(SECRET.to_owned());
    let verdict = signature::verify_request(
        KEY,
        &secret,
        method.as_str(),
        uri.path(),
        &params,
        &body,
        now,
    )
    .map_err(|e| e.to_string());
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    log.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        verdict: verdict.clone(),
        body,
    });
    match verdict {
        Err(err) => (StatusCode::UNAUTHORIZED, err),
        Ok(()) if method == Method::GET => (
            StatusCode::OK,
            json!({"channels": {"presence-a": {}, "b": {}}}).to_string(),
        ),
        Ok(()) => (StatusCode::OK, "{}".into()),
    }
}

/// Serves app `3` on a free loopback port; returns its base URL and the request log.
pub async fn pusher_api() -> (url::Url, Log) {
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .route("/apps/3/events", post(api))
        .route("/apps/3/batch_events", post(api))
        .route("/apps/3/channels", get(api))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url::Url::parse(&format!("http://{addr}")).unwrap(), log)
}
