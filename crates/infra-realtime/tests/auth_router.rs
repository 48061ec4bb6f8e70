//! The auth router as pusher-js talks to it: the exact form bodies it posts, the JSON it
//! expects back, refusals (403), presence members, encrypted channels' shared secrets, and
//! missing or malformed fields (400).

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use infra_core::{ChannelName, Result, Secret, async_trait};
use infra_realtime::{
    AppCredentials, AuthRequest, Authorizer, CHANNEL_AUTH_PATH, ChannelDecision,
    EncryptionMasterKey, PresenceMember, USER_AUTH_PATH, UserData, UserDecision, auth_router,
    private_user_channel, signature,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";

/// The documented rule: a user may join only `private-user-{own id}`, plus the presence
/// channel of workspace `w1` as a member named after them. The user comes from a bearer
/// token holding their id, standing in for the app's session lookup.
struct OwnChannelOnly;

fn current_user(request: &AuthRequest) -> Option<String> {
    let value = request.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

#[async_trait]
impl Authorizer for OwnChannelOnly {
    async fn authorize_channel(
        &self,
        request: &AuthRequest,
        channel: &ChannelName,
    ) -> Result<ChannelDecision> {
        let Some(user) = current_user(request) else {
            return Ok(ChannelDecision::deny("not signed in"));
        };
        if *channel == private_user_channel(&user)? {
            return Ok(ChannelDecision::Allow);
        }
        if channel.as_str() == "presence-workspace-w1" {
            return Ok(ChannelDecision::AllowPresence(
                PresenceMember::new(user.clone())
                    .with_info(json!({"name": format!("User {user}")})),
            ));
        }
        if channel.as_str() == "private-encrypted-notes-42" && user == "42" {
            return Ok(ChannelDecision::Allow);
        }
        Ok(ChannelDecision::deny(format!(
            "user {user} may not join {channel}"
        )))
    }

    async fn authenticate_user(&self, request: &AuthRequest) -> Result<UserDecision> {
        Ok(match current_user(request) {
            Some(id) => UserDecision::Allow(UserData::new(id)),
            None => UserDecision::Deny("not signed in".into()),
        })
    }
}

fn router() -> axum::Router {
    let credentials = AppCredentials::new("3", KEY, SECRET)
        .with_encryption_master_key(EncryptionMasterKey::from_bytes([5; 32]));
    auth_router(credentials, Arc::new(OwnChannelOnly))
}

/// Posts `body` form-encoded, as pusher-js's ajax transport does, as user `user`.
async fn post(path: &str, user: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(user) = user {
        request = request.header(header::AUTHORIZATION, format!("Bearer {user}"));
    }
    let response = router()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn private_channel_of_the_user_is_signed_exactly_as_pusher_js_expects() {
    // pusher-js: "socket_id=" + encodeURIComponent(socketId) + "&channel_name=" + encodeURIComponent(name)
    let (status, body) = post(
        CHANNEL_AUTH_PATH,
        Some("42"),
        "socket_id=1234.1234&channel_name=private-user-42",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = signature::authorize_channel(
        KEY,
        &Secret::new(SECRET.to_owned()),
        "1234.1234",
        &ChannelName::new("private-user-42").unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(body, json!({"auth": expected.auth}));
}

#[tokio::test]
async fn another_users_channel_is_refused_with_a_reason() {
    let (status, body) = post(
        CHANNEL_AUTH_PATH,
        Some("42"),
        "socket_id=1234.1234&channel_name=private-user-43",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"error": "user 42 may not join private-user-43"})
    );
    let (status, body) = post(
        CHANNEL_AUTH_PATH,
        None,
        "socket_id=1234.1234&channel_name=private-user-42",
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::FORBIDDEN, json!({"error": "not signed in"}))
    );
}

#[tokio::test]
async fn presence_member_data_is_signed_and_returned_verbatim() {
    let (status, body) = post(
        CHANNEL_AUTH_PATH,
        Some("7"),
        "socket_id=1234.1234&channel_name=presence-workspace-w1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let channel_data = body["channel_data"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(channel_data).unwrap(),
        json!({"user_id": "7", "user_info": {"name": "User 7"}})
    );
    let expected = signature::authorize_channel(
        KEY,
        &Secret::new(SECRET.to_owned()),
        "1234.1234",
        &ChannelName::new("presence-workspace-w1").unwrap(),
        Some(channel_data),
    )
    .unwrap();
    assert_eq!(body["auth"], json!(expected.auth));
    assert_eq!(body.as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn encrypted_channel_reply_carries_the_shared_secret() {
    let (status, body) = post(
        CHANNEL_AUTH_PATH,
        Some("42"),
        "socket_id=1234.1234&channel_name=private-encrypted-notes-42",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = EncryptionMasterKey::from_bytes([5; 32])
        .shared_secret(&ChannelName::new("private-encrypted-notes-42").unwrap())
        .unwrap();
    assert_eq!(body["shared_secret"], json!(expected.to_base64()));
    assert!(body["auth"].as_str().unwrap().starts_with(KEY));
}

#[tokio::test]
async fn user_sign_in_returns_auth_and_user_data() {
    let (status, body) = post(USER_AUTH_PATH, Some("12345"), "socket_id=1234.1234").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The vector of Pusher's user-authentication docs: 1234.1234::user::{"id":"12345"}.
    assert_eq!(
        body,
        json!({
            "auth": "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba",
            "user_data": "{\"id\":\"12345\"}"
        })
    );
    let (status, _) = post(USER_AUTH_PATH, None, "socket_id=1234.1234").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn missing_or_malformed_fields_are_400_naming_the_field() {
    for (path, body, mentions) in [
        (
            CHANNEL_AUTH_PATH,
            "channel_name=private-user-42",
            "socket_id",
        ),
        (CHANNEL_AUTH_PATH, "socket_id=1234.1234", "channel_name"),
        (
            CHANNEL_AUTH_PATH,
            "socket_id=abc&channel_name=private-user-42",
            "socket_id",
        ),
        (
            CHANNEL_AUTH_PATH,
            "socket_id=1234.1234&channel_name=private%20user",
            "channel",
        ),
        (
            CHANNEL_AUTH_PATH,
            "socket_id=1234.1234&channel_name=public-room",
            "needs no authorization",
        ),
        (USER_AUTH_PATH, "", "socket_id"),
    ] {
        let (status, reply) = post(path, Some("42"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains(mentions),
            "{body}: {reply}"
        );
    }
}

#[tokio::test]
async fn a_json_body_is_accepted_too() {
    let response = router()
        .oneshot(
            Request::post(CHANNEL_AUTH_PATH)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, "Bearer 42")
                .body(Body::from(
                    json!({"socket_id": "1.2", "channel_name": "private-user-42"}).to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
