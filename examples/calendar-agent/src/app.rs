//! The app's HTTP surface: the page, the demo sign-in, preferences, sync requests, and every
//! route of `infra` (health, the Pusher auth endpoint, the embedded realtime server).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use infra::db::Database;
use infra::realtime::RealtimeNotify;
use infra::{Error, ErrorKind, Infra, RateLimiter};
use serde::Deserialize;
use serde_json::json;

use crate::demo_auth::{DemoAuthorizer, DemoSessions};
use crate::demo_data::{DemoUser, calendar_of};
use crate::events::schedule_calendar_sync;
use crate::notifications::{CalendarSyncStarted, Events};
use crate::preferences::{self, Preferences};

/// Sync requests a user may make per window.
pub const SYNC_REQUESTS_PER_MINUTE: u64 = 10;

/// Where the page's copy of pusher-js lives (`npm ci` in `examples/calendar-agent/web`).
const PUSHER_JS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/web/node_modules/pusher-js/dist/web/pusher.min.js"
);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Every service.
    pub infra: Arc<Infra>,
    /// The database (the app needs one).
    pub db: Database,
    /// Demo sign-in.
    pub sessions: DemoSessions,
    /// The users the page offers.
    pub users: Arc<Vec<DemoUser>>,
}

/// The whole app: its own routes beside every route of `infra`, with the demo authorizer
/// deciding who joins which private channel.
pub fn router(state: AppState) -> Router {
    let infra_routes = state
        .infra
        .routes()
        .authorizer(Arc::new(DemoAuthorizer::new(state.sessions.clone())))
        .build();
    Router::new()
        .route("/", get(page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/pusher.min.js", get(pusher_js))
        .route("/api/demo/config", get(demo_config))
        .route("/api/demo/sign-in", post(sign_in))
        .route(
            "/api/users/{id}/preferences",
            get(get_preferences).put(put_preferences),
        )
        .route("/api/calendars/{id}/sync", post(request_sync))
        .with_state(state)
        .merge(infra_routes)
}

/// An `infra::Error` as an HTTP answer: the status its kind means and `{"error": message}`.
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.kind() {
            ErrorKind::InvalidInput | ErrorKind::Decode => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable | ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.0.message() }))).into_response()
    }
}

fn forbidden(message: &str) -> Response {
    (StatusCode::FORBIDDEN, Json(json!({ "error": message }))).into_response()
}

async fn page() -> Html<&'static str> {
    Html(include_str!("../static/index.html"))
}

async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/app.js"),
    )
}

async fn pusher_js() -> Response {
    match tokio::fs::read(PUSHER_JS).await {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            bytes,
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "pusher-js is not installed: run `npm ci` in examples/calendar-agent/web",
        )
            .into_response(),
    }
}

async fn demo_config(State(state): State<AppState>) -> Json<serde_json::Value> {
    let service = state.infra.realtime();
    Json(json!({
        "users": state.users.iter().map(|u| json!({ "id": u.id, "email": u.email })).collect::<Vec<_>>(),
        "pusher": {
            "key": service.credentials().key,
            "backend": service.backend(),
        },
        "events": {
            "started": Events::CALENDAR_SYNC_STARTED,
            "completed": Events::CALENDAR_SYNC_COMPLETED,
            "failed": Events::CALENDAR_SYNC_FAILED,
        },
    }))
}

#[derive(Deserialize)]
struct SignIn {
    user_id: i64,
}

async fn sign_in(State(state): State<AppState>, Json(body): Json<SignIn>) -> Response {
    let Some(user) = state.users.iter().find(|u| u.id == body.user_id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no demo user {}", body.user_id) })),
        )
            .into_response();
    };
    Json(json!({
        "token": state.sessions.issue(user.id),
        "user_id": user.id,
        "email": user.email,
        "calendar_id": user.calendar_id,
    }))
    .into_response()
}

/// The answer refusing a request that is not signed in as `user_id`; `None` lets it through.
fn refuse_unless_user(state: &AppState, headers: &HeaderMap, user_id: i64) -> Option<Response> {
    match state.sessions.user_of(headers) {
        Some(id) if id == user_id => None,
        Some(_) => Some(forbidden("these are another user's preferences")),
        None => Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": "sign in first" })),
            )
                .into_response(),
        ),
    }
}

async fn get_preferences(
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refuse_unless_user(&state, &headers, user_id) {
        return refused;
    }
    match preferences::load(state.infra.cache(), &state.db, user_id).await {
        Ok(prefs) => Json(prefs).into_response(),
        Err(err) => ApiError(err).into_response(),
    }
}

async fn put_preferences(
    State(state): State<AppState>,
    Path(user_id): Path<i64>,
    headers: HeaderMap,
    Json(prefs): Json<Preferences>,
) -> Response {
    if let Some(refused) = refuse_unless_user(&state, &headers, user_id) {
        return refused;
    }
    match preferences::update(state.infra.cache(), &state.db, user_id, &prefs).await {
        Ok(()) => Json(prefs).into_response(),
        Err(err) => ApiError(err).into_response(),
    }
}

/// `POST /api/calendars/{id}/sync`: rate limited per user; queues the sync and tells the
/// user's channel it started. 202 with the event id.
async fn request_sync(
    State(state): State<AppState>,
    Path(calendar_id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    let Some(user_id) = state.sessions.user_of(&headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "sign in first" })),
        )
            .into_response();
    };
    let workspace_id = match calendar_of(&state.db, user_id, calendar_id).await {
        Ok(Some(workspace)) => workspace,
        Ok(None) => return forbidden("not your calendar"),
        Err(err) => return ApiError(err).into_response(),
    };
    let decision = match state
        .infra
        .cache()
        .rate_limiter()
        .check(
            &format!("sync:{user_id}"),
            SYNC_REQUESTS_PER_MINUTE,
            Duration::from_secs(60),
        )
        .await
    {
        Ok(decision) => decision,
        Err(err) => return ApiError(err).into_response(),
    };
    if !decision.allowed {
        let retry = decision.reset_after;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry.as_secs().max(1).to_string())],
            Json(json!({ "error": "too many sync requests; try again later" })),
        )
            .into_response();
    }
    let event_id = match schedule_calendar_sync(
        state.infra.jobs(),
        &user_id.to_string(),
        &calendar_id.to_string(),
        &workspace_id.to_string(),
    )
    .await
    {
        Ok(id) => id,
        Err(err) => return ApiError(err).into_response(),
    };
    if let Err(err) = state
        .infra
        .realtime()
        .notify_user(
            &user_id.to_string(),
            &CalendarSyncStarted {
                calendar_id: calendar_id.to_string(),
            },
        )
        .await
    {
        tracing::warn!(error = %err, "could not announce a started sync");
    }
    (StatusCode::ACCEPTED, Json(json!({ "eventId": event_id }))).into_response()
}
