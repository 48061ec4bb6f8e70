//! A stand-in for Pusher's HTTP API that verifies every request with the crate's verifier,
//! logs what it saw, and answers either from a script (to play failures) or as Pusher does.
#![allow(dead_code)] // each test binary uses a part

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use infra_core::Secret;
use infra_realtime::signature;
use serde_json::{Value, json};

pub const KEY: &str = "278d425bdf160c739803";
pub const SECRET: &str = "7ad3773142a6692b25b8";

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Every query parameter, the signature's included.
    pub query: BTreeMap<String, String>,
    /// `Ok` when the signature verified, else the verifier's error.
    pub verdict: Result<(), String>,
    pub body: Value,
}

impl Seen {
    /// The query without the signing parameters.
    pub fn call_params(&self) -> BTreeMap<String, String> {
        self.query
            .iter()
            .filter(|(k, _)| !k.starts_with("auth_") && k.as_str() != "body_md5")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A scripted reply: status, `Retry-After` as sent, body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Self {
        Reply {
            status,
            retry_after: None,
            body: body.to_owned(),
        }
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        Reply {
            status: 429,
            retry_after: Some(retry_after.to_string()),
            body: "Too many requests".into(),
        }
    }
    /// `status` with `Retry-After: {retry_after}`, whatever that says.
    pub fn retry_after(status: u16, retry_after: &str) -> Self {
        Reply {
            status,
            retry_after: Some(retry_after.to_owned()),
            body: "Try again later".into(),
        }
    }
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

#[derive(Clone, Default)]
struct StandIn {
    log: Log,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

/// What Pusher answers a verified request with.
fn pusher_reply(method: &Method, path: &str, body: &Value) -> Value {
    let rest = path.trim_start_matches("/apps/3/");
    match (
        method.as_str(),
        rest.split('/').collect::<Vec<_>>().as_slice(),
    ) {
        ("GET", ["channels"]) => json!({"channels": {"presence-a": {}, "b": {}}}),
        ("GET", ["channels", _]) => {
            json!({"occupied": true, "user_count": 2, "subscription_count": 3})
        }
        ("GET", ["channels", _, "users"]) => json!({"users": [{"id": "1"}, {"id": "2"}]}),
        ("POST", ["events"]) if body.get("info").is_some() => {
            let channels: serde_json::Map<String, Value> = body["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .map(|c| {
                    (
                        c.to_owned(),
                        json!({"user_count": 2, "subscription_count": 3}),
                    )
                })
                .collect();
            json!({ "channels": channels })
        }
        _ => json!({}),
    }
}

async fn api(
    State(stand_in): State<StandIn>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
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
    stand_in.log.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: params,
        verdict: verdict.clone(),
        body: body.clone(),
    });
    if let Err(err) = verdict {
        return (StatusCode::UNAUTHORIZED, err).into_response();
    }
    let scripted = stand_in.script.lock().unwrap().pop_front();
    match scripted {
        Some(reply) => {
            let mut response =
                (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
            if let Some(after) = reply.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_str(&after).unwrap());
            }
            response
        }
        None => (
            StatusCode::OK,
            pusher_reply(&method, uri.path(), &body).to_string(),
        )
            .into_response(),
    }
}

/// Serves app `3` on a free loopback port; returns its base URL and the request log.
pub async fn pusher_api() -> (url::Url, Log) {
    pusher_api_scripted(Vec::new()).await
}

/// As [`pusher_api`], answering the first verified requests with `script`, in order.
pub async fn pusher_api_scripted(script: Vec<Reply>) -> (url::Url, Log) {
    let stand_in = StandIn {
        log: Arc::default(),
        script: Arc::new(Mutex::new(script.into())),
    };
    let log = stand_in.log.clone();
    let app = axum::Router::new().fallback(api).with_state(stand_in);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url::Url::parse(&format!("http://{addr}")).unwrap(), log)
}
