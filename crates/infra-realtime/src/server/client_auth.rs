//! What a client proves: a channel it may join (and, on presence channels only, the identity
//! the app signed for it) and the user it signs in as. Signatures are checked in constant time
//! over exactly the strings the protocol signs.

use infra_core::{ChannelName, Secret};
use serde_json::Value;

use super::client_message::{SignInRequest, SubscribeRequest, split_auth};
use super::hub::{Presence, Refusal, USER_CHANNEL_PREFIX};
use crate::signature::verify_hmac_hex;

/// Longest presence `user_id` accepted.
const MAX_USER_ID_CHARS: usize = 128;

/// The app's side of a check: its key and secret, and how large an identity may be.
pub(crate) struct AppKeys<'a> {
    pub key: &'a str,
    pub secret: &'a Secret<String>,
    pub max_user_info_bytes: usize,
}

fn refusal(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Checks the channel name and, on private and presence channels, the signature; returns the
/// presence identity on presence channels. `channel_data` counts only on presence channels,
/// where it is signed: on a private channel it is nobody's identity and is ignored.
pub(crate) fn authorize_subscription(
    app: &AppKeys<'_>,
    socket_id: &str,
    request: &SubscribeRequest,
) -> Result<Option<Presence>, Refusal> {
    let channel = request.channel.as_str();
    if channel.starts_with(USER_CHANNEL_PREFIX) {
        // Signed-in users only; the hub checks the id.
        return Ok(None);
    }
    let name = ChannelName::new(channel).map_err(|e| refusal(400, e.to_string()))?;
    if !(name.is_private() || name.is_presence()) {
        return Ok(None);
    }
    let (key, signature) =
        split_auth(request.auth.as_deref()).map_err(|e| refusal(401, e.to_string()))?;
    if key != app.key {
        return Err(refusal(401, "`auth` is for another app key"));
    }
    if !name.is_presence() {
        let signed = format!("{socket_id}:{channel}");
        return if verify_hmac_hex(app.secret, signed.as_bytes(), signature) {
            Ok(None)
        } else {
            Err(refusal(401, "invalid signature"))
        };
    }
    let channel_data = request
        .channel_data
        .as_deref()
        .ok_or_else(|| refusal(400, "presence channels need `channel_data`"))?;
    let signed = format!("{socket_id}:{channel}:{channel_data}");
    if !verify_hmac_hex(app.secret, signed.as_bytes(), signature) {
        return Err(refusal(401, "invalid signature"));
    }
    presence_identity(channel_data, app.max_user_info_bytes).map(Some)
}

/// The `{user_id, user_info?}` of a signed `channel_data`.
fn presence_identity(channel_data: &str, max_info_bytes: usize) -> Result<Presence, Refusal> {
    let parsed: Value = serde_json::from_str(channel_data)
        .map_err(|_| refusal(400, "`channel_data` must be JSON"))?;
    let user_id = match parsed.get("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(refusal(400, "`channel_data` needs a `user_id`")),
    };
    if user_id.chars().count() > MAX_USER_ID_CHARS {
        return Err(refusal(
            400,
            format!("`user_id` is longer than {MAX_USER_ID_CHARS} characters"),
        ));
    }
    let user_info = parsed.get("user_info").cloned().unwrap_or(Value::Null);
    if user_info.to_string().len() > max_info_bytes {
        return Err(refusal(
            400,
            format!("`user_info` is larger than {max_info_bytes} bytes"),
        ));
    }
    Ok(Presence { user_id, user_info })
}

/// Why a sign-in is refused; the connection closes with 4009 after saying so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignInRefused(pub &'static str);

/// Checks a `pusher:signin`; returns the user data as signed and the user's id.
pub(crate) fn verify_sign_in(
    app: &AppKeys<'_>,
    socket_id: &str,
    request: &SignInRequest,
) -> Result<(String, String), SignInRefused> {
    let user_data = request
        .user_data
        .as_deref()
        .ok_or(SignInRefused("pusher:signin needs `user_data`"))?;
    let (key, signature) = split_auth(request.auth.as_deref())
        .map_err(|_| SignInRefused("`auth` must be `key:signature`"))?;
    let signed = format!("{socket_id}::user::{user_data}");
    if key != app.key || !verify_hmac_hex(app.secret, signed.as_bytes(), signature) {
        return Err(SignInRefused("invalid sign-in signature"));
    }
    let id = serde_json::from_str::<Value>(user_data)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .filter(|id| !id.is_empty())
        .ok_or(SignInRefused("`user_data` needs a string `id`"))?;
    Ok((user_data.to_owned(), id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{authenticate_user, authorize_channel};
    use proptest::prelude::*;

    const KEY: &str = "278d425bdf160c739803";
    const SOCKET: &str = "1234.1234";

    fn secret() -> Secret<String> {
        Secret::new("7ad3773142a6692b25b8".to_owned())
    }

    fn request(channel: &str, auth: Option<String>, data: Option<&str>) -> SubscribeRequest {
        SubscribeRequest {
            channel: channel.to_owned(),
            auth,
            channel_data: data.map(str::to_owned),
        }
    }

    fn signed(channel: &str, data: Option<&str>) -> Option<String> {
        let name = ChannelName::new(channel).unwrap();
        Some(
            authorize_channel(KEY, &secret(), SOCKET, &name, data)
                .unwrap()
                .auth,
        )
    }

    #[test]
    fn only_presence_channels_carry_an_identity() {
        let secret = secret();
        let app = AppKeys {
            key: KEY,
            secret: &secret,
            max_user_info_bytes: 1024,
        };
        let forged = r#"{"user_id":"admin","user_info":{"role":"root"}}"#;
        let private = request("private-x", signed("private-x", None), Some(forged));
        assert!(
            authorize_subscription(&app, SOCKET, &private)
                .unwrap()
                .is_none()
        );
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let presence = request("presence-x", signed("presence-x", Some(data)), Some(data));
        let identity = authorize_subscription(&app, SOCKET, &presence)
            .unwrap()
            .unwrap();
        assert_eq!(identity.user_id, "10");
        // A presence subscription signed like a private one does not pass.
        let over_channel_only = crate::signature::hmac_hex(&secret, b"1234.1234:presence-x");
        let private_style = request(
            "presence-x",
            Some(format!("{KEY}:{over_channel_only}")),
            Some(data),
        );
        assert_eq!(
            authorize_subscription(&app, SOCKET, &private_style)
                .unwrap_err()
                .status,
            401
        );
        let public = request("news", None, Some(forged));
        assert!(
            authorize_subscription(&app, SOCKET, &public)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn sign_in() {
        let secret = secret();
        let app = AppKeys {
            key: KEY,
            secret: &secret,
            max_user_info_bytes: 1024,
        };
        let user_data = r#"{"id":"12345"}"#;
        let auth = authenticate_user(KEY, &secret, SOCKET, user_data)
            .unwrap()
            .auth;
        let ok = SignInRequest {
            auth: Some(auth.clone()),
            user_data: Some(user_data.to_owned()),
        };
        assert_eq!(
            verify_sign_in(&app, SOCKET, &ok).unwrap().1,
            "12345".to_owned()
        );
        let other_socket = verify_sign_in(&app, "1.1", &ok).unwrap_err();
        assert_eq!(other_socket.0, "invalid sign-in signature");
        let no_data = SignInRequest {
            auth: Some(auth),
            user_data: None,
        };
        assert!(verify_sign_in(&app, SOCKET, &no_data).is_err());
    }

    proptest! {
        #[test]
        fn any_subscription_is_allowed_or_refused_with_a_status(
            channel in prop_oneof![
                "(private-|presence-|private-encrypted-|#server-to-user-|)[A-Za-z0-9_=@,.;-]{0,30}",
                ".{0,60}",
            ],
            auth in proptest::option::of(prop_oneof![
                ".{0,80}",
                "[0-9a-f]{20}:[0-9a-f]{0,70}",
                Just(format!("{KEY}:{}", "0".repeat(64))),
            ]),
            channel_data in proptest::option::of(prop_oneof![
                ".{0,80}",
                Just(r#"{"user_id":"u"}"#.to_owned()),
                Just(r#"{"user_id":""}"#.to_owned()),
                Just(r#"{"user_id":[1]}"#.to_owned()),
            ]),
        ) {
            let secret = secret();
            let app = AppKeys { key: KEY, secret: &secret, max_user_info_bytes: 64 };
            let request = SubscribeRequest { channel, auth, channel_data };
            match authorize_subscription(&app, SOCKET, &request) {
                Ok(Some(_)) => prop_assert!(request.channel.starts_with("presence-")),
                Ok(None) => {}
                Err(refusal) => {
                    prop_assert!(refusal.status == 400 || refusal.status == 401);
                    prop_assert!(!refusal.message.is_empty());
                }
            }
        }

        #[test]
        fn any_sign_in_is_verified_or_refused(
            auth in proptest::option::of(".{0,80}"),
            user_data in proptest::option::of(".{0,80}"),
        ) {
            let secret = secret();
            let app = AppKeys { key: KEY, secret: &secret, max_user_info_bytes: 64 };
            // Random strings never carry a valid signature.
            let request = SignInRequest { auth, user_data };
            prop_assert!(verify_sign_in(&app, SOCKET, &request).is_err());
        }
    }
}
