//! The `VerifiedWebhook` extractor: verified and parsed in one step, 401 on a wrong signature
//! or on a correctly signed webhook too old or too far ahead (a replay), 400 on a signed body
//! that is not a webhook.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use axum::routing::post;
use infra_core::Secret;
use infra_realtime::{AppCredentials, VerifiedWebhook, WebhookEvent};
use tower::ServiceExt;

const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";
// Pusher's webhook docs example, signed with the docs' example secret.
const BODY: &str =
    r#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
const SIGNATURE: &str = "709fdb84c03664445f7698120b0edf0acc1ab1c8c6e93a0368c61841d6b998aa";

async fn handler(VerifiedWebhook(hook): VerifiedWebhook) -> String {
    let occupied: Vec<&str> = hook
        .events
        .iter()
        .filter_map(|e| match e {
            WebhookEvent::ChannelOccupied { channel } => Some(channel.as_str()),
            _ => None,
        })
        .collect();
    format!("{} {}", hook.time_ms, occupied.join(","))
}

async fn deliver(body: &str, signature: &str) -> (StatusCode, String) {
    deliver_to(AppCredentials::new("3", KEY, SECRET), body, signature).await
}

async fn deliver_to(
    credentials: AppCredentials,
    body: &str,
    signature: &str,
) -> (StatusCode, String) {
    let app: Router = Router::new()
        .route("/webhook", post(handler))
        .with_state(credentials);
    let response = app
        .oneshot(
            Request::post("/webhook")
                .header("content-type", "application/json")
                .header("x-pusher-key", KEY)
                .header("x-pusher-signature", signature)
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let text = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
    (status, String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test]
async fn verified_and_parsed_in_one_step() {
    let now = now_ms();
    let (body, signature) = signed_at(now);
    assert_eq!(
        deliver(&body, &signature).await,
        (StatusCode::OK, format!("{now} test_channel"))
    );
}

#[tokio::test]
async fn wrong_signature_is_401_and_a_signed_non_webhook_is_400() {
    let tampered = BODY.replace("test_channel", "other_channel");
    let (status, text) = deliver(&tampered, SIGNATURE).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("X-Pusher-Signature"), "{text}");

    let not_a_webhook = r#"{"hello":"world"}"#;
    let signed =
        infra_core::hmac_sha256_hex(&Secret::new(SECRET.to_owned()), not_a_webhook.as_bytes());
    let (status, text) = deliver(not_a_webhook, &signed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("body"), "{text}");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A `channel_occupied` webhook created at `time_ms`, and its correct signature.
fn signed_at(time_ms: u64) -> (String, String) {
    let body = format!(
        r#"{{"time_ms":{time_ms},"events":[{{"name":"channel_occupied","channel":"test_channel"}}]}}"#
    );
    let signature = infra_core::hmac_sha256_hex(&Secret::new(SECRET.to_owned()), body.as_bytes());
    (body, signature)
}

#[tokio::test]
async fn a_correctly_signed_webhook_from_long_ago_is_refused_as_a_replay() {
    // Pusher's documented example, captured in 2012 and sent again: its signature is right.
    let (status, text) = deliver(BODY, SIGNATURE).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("time_ms"), "{text}");

    // Six minutes old, or six minutes ahead: beyond the default five minutes either way.
    let now = now_ms();
    for time_ms in [now - 6 * 60_000, now + 6 * 60_000] {
        let (body, signature) = signed_at(time_ms);
        let (status, text) = deliver(&body, &signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{time_ms}: {text}");
        assert!(text.contains("time_ms"), "{text}");
    }

    // A minute old: a delivery Pusher retried, accepted.
    let (body, signature) = signed_at(now - 60_000);
    assert_eq!(deliver(&body, &signature).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_tolerance_is_the_credentials_own() {
    let now = now_ms();
    let strict =
        AppCredentials::new("3", KEY, SECRET).with_webhook_tolerance(Duration::from_secs(30));
    let (body, signature) = signed_at(now - 60_000);
    let (status, text) = deliver_to(strict.clone(), &body, &signature).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(
        text.contains("1m old, more than the tolerance of 30s"),
        "{text}"
    );
    let (body, signature) = signed_at(now - 10_000);
    assert_eq!(
        deliver_to(strict, &body, &signature).await.0,
        StatusCode::OK
    );

    // Pusher's 2012 example, for an app that accepts webhooks of any age.
    let lenient = AppCredentials::new("3", KEY, SECRET).with_webhook_tolerance(Duration::MAX);
    assert_eq!(
        deliver_to(lenient, BODY, SIGNATURE).await,
        (StatusCode::OK, "1327078148132 test_channel".to_owned())
    );
}
