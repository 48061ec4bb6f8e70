//! An axum extractor that verifies a Pusher webhook and parses it in one step.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::credentials::AppCredentials;
use crate::webhook::{KEY_HEADER, SIGNATURE_HEADER, TIME_FIELD, Webhook};

/// A webhook whose key and signature were checked against the app's credentials, which the
/// router's state provides through `FromRef` (an [`AppCredentials`] field or the state
/// itself).
///
/// ```
/// use axum::{Router, routing::post};
/// use infra_realtime::{AppCredentials, VerifiedWebhook, WebhookEvent};
///
/// async fn pusher_webhook(VerifiedWebhook(hook): VerifiedWebhook) -> &'static str {
///     for event in &hook.events {
///         if let WebhookEvent::ChannelVacated { channel } = event {
///             tracing::info!(%channel, at_ms = hook.time_ms, "channel vacated");
///         }
///     }
///     "ok"
/// }
///
/// let credentials = AppCredentials::new("3", "app-key", "app-secret");
/// let app: Router = Router::new()
///     .route("/api/pusher/webhook", post(pusher_webhook))
///     .with_state(credentials);
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedWebhook(pub Webhook);

/// Why a webhook was refused: 401 for a wrong key or signature or a `time_ms` beyond the
/// credentials' [`webhook_tolerance`](AppCredentials::webhook_tolerance) (a replayed or
/// misdated delivery), 400 for a body that is not a webhook, with the reason as text.
#[derive(Debug)]
pub struct WebhookRejection {
    status: StatusCode,
    message: String,
}

impl WebhookRejection {
    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

impl<S> FromRequest<S> for VerifiedWebhook
where
    S: Send + Sync,
    AppCredentials: FromRef<S>,
{
    type Rejection = WebhookRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let credentials = AppCredentials::from_ref(state);
        let (key, signature) = (
            header_text(&request, KEY_HEADER),
            header_text(&request, SIGNATURE_HEADER),
        );
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| WebhookRejection {
                status: StatusCode::BAD_REQUEST,
                message: e.body_text(),
            })?;
        credentials
            .verify_webhook(&key, &signature, &body)
            .map(VerifiedWebhook)
            .map_err(|err| {
                let unauthentic = matches!(
                    err.field(),
                    Some(f) if f == KEY_HEADER || f == SIGNATURE_HEADER || f == TIME_FIELD
                );
                WebhookRejection {
                    status: if unauthentic {
                        StatusCode::UNAUTHORIZED
                    } else {
                        StatusCode::BAD_REQUEST
                    },
                    message: err.message().to_owned(),
                }
            })
    }
}

fn header_text(request: &Request, name: &str) -> String {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
