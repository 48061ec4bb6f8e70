//! Pusher's HTTP API: trigger events, query channels and users, terminate a user's connections.
//!
//! Every call is verified as Pusher's API does ([`crate::signature::verify_request`]): the
//! key, the signature over method, path and query, `body_md5`, and the timestamp within ±600 s.
//! Status codes follow Pusher's API reference: 400 malformed, 401 signature or timestamp,
//! 404 unknown app, 413 data or body too large.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use infra_core::{ChannelName, EventName};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::hub::{AppHub, ChannelStats, Hub, USER_CHANNEL_PREFIX};
use crate::limits::{MAX_BATCH_EVENTS, MAX_CHANNELS_PER_TRIGGER};
use crate::signature::{check_socket_id, verify_request};

/// An HTTP API error: a status and the message sent as the body.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Finds the app and verifies the request's signature.
fn authenticate(
    hub: &Hub,
    app_id: &str,
    method: &Method,
    uri: &Uri,
    query: Option<&str>,
    body: &[u8],
) -> Result<(Arc<AppHub>, BTreeMap<String, String>), ApiError> {
    let app = hub
        .by_id(app_id)
        .cloned()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("Unknown app `{app_id}`")))?;
    let params = query_params(query);
    verify(app, params, method, uri, body)
}

fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Verifies a request to `app`: signature over the path as sent, `body_md5`, timestamp, size.
fn verify(
    app: Arc<AppHub>,
    params: BTreeMap<String, String>,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<(Arc<AppHub>, BTreeMap<String, String>), ApiError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    verify_request(
        &app.config.key,
        &app.config.secret,
        method.as_str(),
        uri.path(),
        &params,
        body,
        now,
    )
    .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let body_limit = app.config.limits.max_payload_bytes * MAX_BATCH_EVENTS + 64 * 1024;
    if body.len() > body_limit {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is {} bytes; the limit is {body_limit}", body.len()),
        ));
    }
    Ok((app, params))
}

#[derive(Deserialize)]
struct TriggerBody {
    name: String,
    data: Value,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

/// A trigger checked whole before anything is delivered.
struct CheckedTrigger {
    name: String,
    data: String,
    channels: Vec<String>,
    socket_id: Option<String>,
    info: HashSet<String>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("body is not valid: {e}")))
}

/// A trigger's channel: a valid name, or a user channel of `sendToUser`.
fn check_channel(name: &str) -> Result<(), ApiError> {
    if let Some(user) = name.strip_prefix(USER_CHANNEL_PREFIX) {
        if user.is_empty() {
            return Err(bad_request("user channel without a user id"));
        }
        return Ok(());
    }
    ChannelName::new(name)
        .map(drop)
        .map_err(|e| bad_request(e.to_string()))
}

fn parse_info(info: Option<&str>) -> HashSet<String> {
    info.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_trigger(app: &AppHub, body: TriggerBody) -> Result<CheckedTrigger, ApiError> {
    EventName::new(body.name.as_str()).map_err(|e| bad_request(e.to_string()))?;
    let data = match body.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let limit = app.config.limits.max_payload_bytes;
    if data.len() > limit {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("data is {} bytes; the limit is {limit}", data.len()),
        ));
    }
    let channels = match (body.channels, body.channel) {
        (Some(channels), None) => channels,
        (None, Some(channel)) => vec![channel],
        _ => return Err(bad_request("give exactly one of `channels` and `channel`")),
    };
    if channels.is_empty() || channels.len() > MAX_CHANNELS_PER_TRIGGER {
        return Err(bad_request(format!(
            "`channels` names {}; between 1 and {MAX_CHANNELS_PER_TRIGGER} are allowed",
            channels.len()
        )));
    }
    for channel in &channels {
        check_channel(channel)?;
    }
    if channels.len() > 1 && channels.iter().any(|c| c.starts_with("private-encrypted-")) {
        return Err(bad_request(
            "an encrypted channel must be the only channel of a trigger",
        ));
    }
    if let Some(socket_id) = &body.socket_id {
        check_socket_id(socket_id).map_err(|e| bad_request(e.to_string()))?;
    }
    let info = parse_info(body.info.as_deref());
    check_info(&info, &channels)?;
    Ok(CheckedTrigger {
        name: body.name,
        data,
        channels,
        socket_id: body.socket_id,
        info,
    })
}

fn check_info(info: &HashSet<String>, channels: &[String]) -> Result<(), ApiError> {
    for attribute in info {
        match attribute.as_str() {
            "subscription_count" => {}
            "user_count" => {
                if let Some(other) = channels.iter().find(|c| !c.starts_with("presence-")) {
                    return Err(bad_request(format!(
                        "`user_count` is only for presence channels, not `{other}`"
                    )));
                }
            }
            other => return Err(bad_request(format!("unknown info attribute `{other}`"))),
        }
    }
    Ok(())
}

fn info_json(stats: Option<ChannelStats>, info: &HashSet<String>) -> Value {
    let mut out = Map::new();
    let subscription_count = stats.as_ref().map_or(0, |s| s.subscription_count);
    if info.contains("subscription_count") {
        out.insert("subscription_count".into(), json!(subscription_count));
    }
    if info.contains("user_count") {
        let users = stats.and_then(|s| s.user_count).unwrap_or(0);
        out.insert("user_count".into(), json!(users));
    }
    Value::Object(out)
}

async fn deliver(app: &AppHub, trigger: &CheckedTrigger) -> Value {
    let mut infos = Map::new();
    for channel in &trigger.channels {
        app.publish(
            channel,
            &trigger.name,
            &trigger.data,
            trigger.socket_id.as_deref(),
        );
        if !trigger.info.is_empty() {
            infos.insert(
                channel.clone(),
                info_json(app.query_channel(channel).await, &trigger.info),
            );
        }
    }
    Value::Object(infos)
}

/// `POST /apps/{app_id}/events`.
pub(crate) async fn events(
    State(hub): State<Arc<Hub>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let (app, _) = authenticate(&hub, &app_id, &method, &uri, query.as_deref(), &body)?;
    let trigger = check_trigger(&app, parse_body(&body)?)?;
    let infos = deliver(&app, &trigger).await;
    app.flush_relays().await;
    if trigger.info.is_empty() {
        Ok(Json(json!({})))
    } else {
        Ok(Json(json!({"channels": infos})))
    }
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<TriggerBody>,
}

/// `POST /apps/{app_id}/batch_events`: every event is checked before any is delivered.
pub(crate) async fn batch_events(
    State(hub): State<Arc<Hub>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let (app, _) = authenticate(&hub, &app_id, &method, &uri, query.as_deref(), &body)?;
    let batch: BatchBody = parse_body(&body)?;
    if batch.batch.is_empty() || batch.batch.len() > MAX_BATCH_EVENTS {
        return Err(bad_request(format!(
            "`batch` holds {} events; between 1 and {MAX_BATCH_EVENTS} are allowed",
            batch.batch.len()
        )));
    }
    let checked = batch
        .batch
        .into_iter()
        .map(|event| {
            if event.channels.is_some() {
                return Err(bad_request("batch events name one `channel`"));
            }
            check_trigger(&app, event)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wants_info = checked.iter().any(|t| !t.info.is_empty());
    let mut infos: Vec<Value> = Vec::with_capacity(checked.len());
    for trigger in &checked {
        let info = deliver(&app, trigger).await;
        infos.push(
            info.as_object()
                .and_then(|m| m.values().next().cloned())
                .unwrap_or_else(|| json!({})),
        );
    }
    app.flush_relays().await;
    if wants_info {
        Ok(Json(json!({"batch": infos})))
    } else {
        Ok(Json(json!({})))
    }
}

/// `GET /apps/{app_id}/channels` (`filter_by_prefix`, `info=user_count` for presence).
pub(crate) async fn channels(
    State(hub): State<Arc<Hub>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let (app, params) = authenticate(&hub, &app_id, &method, &uri, query.as_deref(), &[])?;
    let prefix = params.get("filter_by_prefix").map_or("", String::as_str);
    let info = parse_info(params.get("info").map(String::as_str));
    for attribute in &info {
        match attribute.as_str() {
            "user_count" if prefix.starts_with("presence-") => {}
            "user_count" => {
                return Err(bad_request(
                    "`info=user_count` needs `filter_by_prefix=presence-`",
                ));
            }
            other => return Err(bad_request(format!("unknown info attribute `{other}`"))),
        }
    }
    let channels: Map<String, Value> = app
        .query_channels(prefix)
        .await
        .into_iter()
        .map(|(name, stats)| {
            let mut attributes = Map::new();
            if info.contains("user_count") {
                attributes.insert("user_count".into(), json!(stats.user_count.unwrap_or(0)));
            }
            (name, Value::Object(attributes))
        })
        .collect();
    Ok(Json(json!({"channels": channels})))
}

/// `GET /apps/{app_id}/channels/{channel}` (`info=user_count,subscription_count`).
pub(crate) async fn channel(
    State(hub): State<Arc<Hub>>,
    Path((app_id, channel)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let (app, params) = authenticate(&hub, &app_id, &method, &uri, query.as_deref(), &[])?;
    check_channel(&channel)?;
    let info = parse_info(params.get("info").map(String::as_str));
    check_info(&info, std::slice::from_ref(&channel))?;
    let stats = app.query_channel(&channel).await;
    let occupied = stats.is_some();
    let mut body = info_json(stats, &info);
    body["occupied"] = json!(occupied);
    Ok(Json(body))
}

/// `GET /apps/{app_id}/channels/{channel}/users` (presence channels).
pub(crate) async fn users(
    State(hub): State<Arc<Hub>>,
    Path((app_id, channel)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let (app, _) = authenticate(&hub, &app_id, &method, &uri, query.as_deref(), &[])?;
    check_channel(&channel)?;
    if !channel.starts_with("presence-") {
        return Err(bad_request("users are listed for presence channels only"));
    }
    let users: Vec<Value> = app
        .query_users(&channel)
        .await
        .into_iter()
        .map(|id| json!({"id": id}))
        .collect();
    Ok(Json(json!({"users": users})))
}

/// `POST /users/{user_id}/terminate_connections`, as the PyPI SDK sends it: the app is the
/// one whose key signed the request (`auth_key`), the signature is over the path as sent.
pub(crate) async fn terminate_connections_by_key(
    State(hub): State<Arc<Hub>>,
    Path(user_id): Path<String>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let params = query_params(query.as_deref());
    let unauthorized = |message: &str| ApiError(StatusCode::UNAUTHORIZED, message.to_owned());
    let key = params
        .get("auth_key")
        .ok_or_else(|| unauthorized("`auth_key` is missing"))?;
    let app = hub
        .by_key(key)
        .cloned()
        .ok_or_else(|| unauthorized("unknown `auth_key`"))?;
    let (app, _) = verify(app, params, &method, &uri, &body)?;
    app.terminate_user(&user_id);
    Ok(Json(json!({})))
}

/// `POST /apps/{app_id}/users/{user_id}/terminate_connections`.
pub(crate) async fn terminate_connections(
    State(hub): State<Arc<Hub>>,
    Path((app_id, user_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let (app, _) = authenticate(&hub, &app_id, &method, &uri, query.as_deref(), &body)?;
    app.terminate_user(&user_id);
    Ok(Json(json!({})))
}
