//! A stand-in for Upstash's REST API (https://upstash.com/docs/redis/features/restapi) that
//! forwards every command to a real Redis:
//!
//! - `POST /` with a JSON command array → `{"result": …}` (200) or `{"error": "CODE …"}` (400);
//! - `POST /pipeline` and `POST /multi-exec` (the latter inside `MULTI`/`EXEC`) with an array
//!   of commands → an array of `{"result"}`/`{"error"}`;
//! - `Authorization: Bearer <token>` required, else 401;
//! - `Upstash-Encoding: base64`: every string in a reply base64-encoded except the status `OK`.
//!
//! It records the command names it received, so tests can count requests.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};

#[derive(Clone)]
struct Shared {
    redis: MultiplexedConnection,
    token: String,
    received: Arc<Mutex<Vec<String>>>,
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    pub url: String,
    received: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Serves on a spare local port, forwarding to `redis_url`, accepting `token`.
    pub async fn start(redis_url: &str, token: &str) -> StandIn {
        let redis = redis::Client::open(redis_url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            redis,
            token: token.to_owned(),
            received: received.clone(),
        };
        let app = Router::new()
            .route("/", post(single))
            .route("/pipeline", post(pipeline))
            .route("/multi-exec", post(multi_exec))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StandIn {
            url,
            received,
            server,
        }
    }

    /// The names of the commands received so far (`/multi-exec` requests as `multi-exec`).
    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Checks the token; parses the body; says whether replies are base64.
fn accept(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Value, bool), (StatusCode, Value)> {
    let expected = format!("Bearer {}", shared.token);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return Err((
            StatusCode::UNAUTHORIZED,
            json!({"error": "WRONGPASS invalid or missing auth token"}),
        ));
    }
    let base64 = headers
        .get("upstash-encoding")
        .and_then(|v| v.to_str().ok())
        == Some("base64");
    serde_json::from_slice(body)
        .map(|v| (v, base64))
        .map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                json!({"error": format!("ERR {e}")}),
            )
        })
}

/// A JSON command array as a Redis command, and its name.
fn command(value: &Value) -> Result<(String, redis::Cmd), String> {
    let items = value
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("ERR empty command")?;
    let mut args = Vec::with_capacity(items.len());
    for item in items {
        args.push(match item {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Number(n) => n.to_string().into_bytes(),
            _ => return Err("ERR arguments must be strings or numbers".into()),
        });
    }
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let mut cmd = redis::cmd(&name);
    for a in &args[1..] {
        cmd.arg(a.as_slice());
    }
    Ok((name, cmd))
}

fn error_text(err: &redis::RedisError) -> String {
    format!(
        "{} {}",
        err.code().unwrap_or("ERR"),
        err.detail().unwrap_or_default()
    )
}

fn encode(value: redis::Value, base64: bool) -> Value {
    let text = |bytes: &[u8]| {
        if base64 {
            Value::String(BASE64.encode(bytes))
        } else {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    match value {
        redis::Value::Nil => Value::Null,
        redis::Value::Int(n) => json!(n),
        redis::Value::Okay => json!("OK"),
        redis::Value::SimpleString(s) if s == "OK" => json!("OK"),
        redis::Value::SimpleString(s) => text(s.as_bytes()),
        redis::Value::BulkString(bytes) => text(&bytes),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Value::Array(items.into_iter().map(|v| encode(v, base64)).collect())
        }
        redis::Value::Double(d) => json!(d),
        redis::Value::Boolean(b) => json!(b),
        _ => Value::Null,
    }
}

/// `{"result"}` or `{"error"}` for one item of an `EXEC` reply.
fn outcome(value: redis::Value, base64: bool) -> Value {
    match value {
        redis::Value::ServerError(err) => json!({
            "error": format!("{} {}", err.code(), err.details().unwrap_or_default())
        }),
        other => json!({"result": encode(other, base64)}),
    }
}

async fn run(shared: &Shared, value: &Value, base64: bool) -> Value {
    let (name, cmd) = match command(value) {
        Ok(c) => c,
        Err(e) => return json!({"error": e}),
    };
    shared.received.lock().unwrap().push(name);
    let mut conn = shared.redis.clone();
    match cmd.query_async::<redis::Value>(&mut conn).await {
        Ok(v) => json!({"result": encode(v, base64)}),
        Err(err) => json!({"error": error_text(&err)}),
    }
}

async fn single(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (value, base64) = match accept(&shared, &headers, &body) {
        Ok(v) => v,
        Err((status, body)) => return reply(status, body),
    };
    let out = run(&shared, &value, base64).await;
    let status = if out.get("error").is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    reply(status, out)
}

async fn pipeline(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (value, base64) = match accept(&shared, &headers, &body) {
        Ok(v) => v,
        Err((status, body)) => return reply(status, body),
    };
    let Some(commands) = value.as_array() else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "ERR not an array"}),
        );
    };
    let mut out = Vec::with_capacity(commands.len());
    for c in commands {
        out.push(run(&shared, c, base64).await);
    }
    reply(StatusCode::OK, Value::Array(out))
}

async fn multi_exec(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (value, base64) = match accept(&shared, &headers, &body) {
        Ok(v) => v,
        Err((status, body)) => return reply(status, body),
    };
    shared.received.lock().unwrap().push("multi-exec".into());
    let mut pipe = redis::pipe();
    pipe.atomic();
    for c in value.as_array().into_iter().flatten() {
        match command(c) {
            Ok((_, cmd)) => {
                pipe.add_command(cmd);
            }
            // A malformed command discards the whole transaction, as on Upstash.
            Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": e})),
        }
    }
    let mut conn = shared.redis.clone();
    match pipe.query_async::<Vec<redis::Value>>(&mut conn).await {
        Ok(items) => reply(
            StatusCode::OK,
            Value::Array(items.into_iter().map(|v| outcome(v, base64)).collect()),
        ),
        Err(err) => reply(StatusCode::BAD_REQUEST, json!({"error": error_text(&err)})),
    }
}
