//! The app's auth endpoints for pusher-js, as an axum router.
//!
//! - `POST /api/pusher/auth` — channel authorization. pusher-js posts the form body
//!   `socket_id=…&channel_name=…` (`application/x-www-form-urlencoded`; a JSON object is
//!   accepted too). Answers `{"auth"}`, `{"auth","channel_data"}` (presence) or
//!   `{"auth","shared_secret"}` (encrypted) — exactly what pusher-js reads.
//! - `POST /api/pusher/user-auth` — user sign-in. Body `socket_id=…`; answers
//!   `{"auth","user_data"}`.
//!
//! A refusal is 403 `{"error": reason}`; a missing or malformed field is 400
//! `{"error": …}` naming the field; the authorizer failing is 500 (503 when retryable)
//! without its message, which is logged instead.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use infra_core::{ChannelName, Error, ErrorKind};
use serde_json::json;

use crate::auth_payload::{ChannelAuth, UserAuth};
use crate::authorizer::{AuthRequest, Authorizer, ChannelDecision, UserDecision};
use crate::channel_kind::ChannelKind;
use crate::credentials::AppCredentials;
use crate::signature::check_socket_id;

/// Where pusher-js's `channelAuthorization.endpoint` points (the TypeScript module's endpoint).
pub const CHANNEL_AUTH_PATH: &str = "/api/pusher/auth";
/// Where pusher-js's `userAuthentication.endpoint` points.
pub const USER_AUTH_PATH: &str = "/api/pusher/user-auth";

struct AuthState {
    credentials: AppCredentials,
    authorizer: Arc<dyn Authorizer>,
}

/// The router serving [`CHANNEL_AUTH_PATH`] and [`USER_AUTH_PATH`]; merge it into the app's.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use infra_realtime::{AppCredentials, Authorizer, auth_router};
/// # fn app(credentials: AppCredentials, authorizer: Arc<dyn Authorizer>) -> axum::Router {
/// axum::Router::new().merge(auth_router(credentials, authorizer))
/// # }
/// ```
pub fn auth_router<S>(credentials: AppCredentials, authorizer: Arc<dyn Authorizer>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let state = Arc::new(AuthState {
        credentials,
        authorizer,
    });
    Router::new()
        .route(CHANNEL_AUTH_PATH, post(channel_auth))
        .route(USER_AUTH_PATH, post(user_auth))
        .with_state(state)
}

/// A refused or failed auth request: its status and the `{"error"}` message.
struct AuthFailure {
    status: StatusCode,
    message: String,
}

impl AuthFailure {
    fn bad_request(message: impl Into<String>) -> Self {
        AuthFailure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn refused(reason: String) -> Self {
        AuthFailure {
            status: StatusCode::FORBIDDEN,
            message: reason,
        }
    }

    /// Input the protocol refuses: 400 with the rule; anything else is our failure.
    fn from_error(err: &Error) -> Self {
        if err.kind() == ErrorKind::InvalidInput {
            AuthFailure::bad_request(err.message())
        } else {
            AuthFailure::failed(err)
        }
    }

    /// The authorizer or signing failed: logged, answered without the message.
    fn failed(err: &Error) -> Self {
        tracing::error!(error = %err, "Pusher auth endpoint failed");
        AuthFailure {
            status: if err.is_retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            message: "authorization failed".into(),
        }
    }
}

impl IntoResponse for AuthFailure {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// The form (or JSON) fields of an auth request.
fn fields(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, AuthFailure> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        let value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|_| AuthFailure::bad_request("the JSON body must be an object"))?;
        return Ok(value
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect());
    }
    Ok(url::form_urlencoded::parse(body).into_owned().collect())
}

fn field<'a>(fields: &'a HashMap<String, String>, name: &str) -> Result<&'a str, AuthFailure> {
    fields
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| AuthFailure::bad_request(format!("`{name}` is missing")))
}

/// Reads and checks `socket_id`.
fn auth_request(
    fields: &HashMap<String, String>,
    headers: HeaderMap,
) -> Result<AuthRequest, AuthFailure> {
    let socket_id = field(fields, "socket_id")?;
    check_socket_id(socket_id).map_err(|e| AuthFailure::from_error(&e))?;
    Ok(AuthRequest {
        socket_id: socket_id.to_owned(),
        headers,
    })
}

async fn channel_auth(
    State(state): State<Arc<AuthState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ChannelAuth>, AuthFailure> {
    let fields = fields(&headers, &body)?;
    let request = auth_request(&fields, headers)?;
    let channel = ChannelName::new(field(&fields, "channel_name")?)
        .map_err(|e| AuthFailure::from_error(&e))?;
    let kind = ChannelKind::of(&channel);
    if !kind.needs_authorization() {
        return Err(AuthFailure::bad_request(format!(
            "`{channel}` is a {kind} channel, which needs no authorization"
        )));
    }
    let decision = state
        .authorizer
        .authorize_channel(&request, &channel)
        .await
        .map_err(|e| AuthFailure::failed(&e))?;
    let member = match (decision, kind) {
        (ChannelDecision::Deny(reason), _) => return Err(AuthFailure::refused(reason)),
        (ChannelDecision::AllowPresence(member), ChannelKind::Presence) => Some(member),
        (ChannelDecision::Allow, ChannelKind::Presence) => {
            return Err(AuthFailure::failed(&Error::backend(
                "the authorizer allowed a presence channel without member data (answer AllowPresence)",
            )));
        }
        (_, _) => None,
    };
    state
        .credentials
        .authorize_channel(&request.socket_id, &channel, member.as_ref())
        .map(Json)
        .map_err(|e| AuthFailure::from_error(&e))
}

async fn user_auth(
    State(state): State<Arc<AuthState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<UserAuth>, AuthFailure> {
    let fields = fields(&headers, &body)?;
    let request = auth_request(&fields, headers)?;
    let user = match state.authorizer.authenticate_user(&request).await {
        Ok(UserDecision::Allow(user)) => user,
        Ok(UserDecision::Deny(reason)) => return Err(AuthFailure::refused(reason)),
        Err(err) => return Err(AuthFailure::failed(&err)),
    };
    state
        .credentials
        .authenticate_user(&request.socket_id, &user)
        .map(Json)
        .map_err(|e| AuthFailure::failed(&e))
}
