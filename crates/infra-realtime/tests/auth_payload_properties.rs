//! Property tests of what a client-side helper reads from an auth endpoint or a channel:
//! the auth replies (`{"auth", "channel_data"?, "shared_secret"?}`, `{"auth", "user_data"}`)
//! and the presence and user data inside them, the `key:signature` strings and the hex
//! signatures they carry, and encrypted events (`{"nonce", "ciphertext"}`) with the shared
//! secret that opens them. For any input: no panic (nor a stack overflow on deep JSON); a
//! refusal is a typed error naming the field; what was signed or sealed verifies or opens,
//! and a change to it does not.

use infra_core::{ChannelName, ErrorKind, Secret};
use infra_core::{hmac_sha256_hex, verify_hmac_sha256_hex};
use infra_realtime::signature::{authenticate_user, authorize_channel};
use infra_realtime::{
    ChannelAuth, EncryptedPayload, EncryptionMasterKey, PresenceMember, SharedSecret, UserAuth,
    UserData,
};
use proptest::prelude::*;

const KEY: &str = "278d425bdf160c739803";

fn secret() -> Secret<String> {
    Secret::new("7ad3773142a6692b25b8".to_owned())
}

/// Text shaped like an auth reply, with every part drawn: right, wrong type, missing, extra.
fn auth_reply_like() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_owned()),
        "[0-9]{1,4}",
        r#""[a-z0-9:.{}\\"]{0,20}""#,
        Just(r#"{"user_id":"1"}"#.to_owned()),
        Just("[]".to_owned()),
    ];
    (
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("auth"),
                    Just("channel_data"),
                    Just("shared_secret"),
                    Just("user_data"),
                    Just("id"),
                    Just("user_id"),
                    Just("user_info"),
                    Just("watchlist"),
                    Just("other"),
                ],
                value,
            ),
            0..5,
        ),
        ".{0,3}",
    )
        .prop_map(|(fields, tail)| {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}{tail}", body.join(","))
        })
}

/// `depth` arrays nested in each other, then a `user_id`: deeper than serde_json recurses.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_auth_reply_parses_or_is_a_json_error(text in prop_oneof![auth_reply_like(), ".{0,60}"]) {
        // Whatever parses serialises back to what it read.
        if let Ok(reply) = serde_json::from_str::<ChannelAuth>(&text) {
            let again: ChannelAuth = serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
            prop_assert_eq!(again, reply);
        }
        if let Ok(reply) = serde_json::from_str::<UserAuth>(&text) {
            let again: UserAuth = serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
            prop_assert_eq!(again, reply);
        }
        if let Ok(member) = serde_json::from_str::<PresenceMember>(&text) {
            let again: PresenceMember = serde_json::from_str(&member.to_channel_data()).unwrap();
            prop_assert_eq!(again, member);
        }
        if let Ok(user) = serde_json::from_str::<UserData>(&text) {
            let again: UserData = serde_json::from_str(&user.to_user_data()).unwrap();
            prop_assert_eq!(again, user);
        }
    }

    #[test]
    fn signed_presence_and_user_data_verify_under_their_auth_string(
        socket in (1u32..1_000_000, 1u32..1_000_000),
        user_id in "[A-Za-z0-9_@.-]{1,20}",
        info in proptest::option::of("[A-Za-z ]{0,12}"),
        watchlist in proptest::option::of(proptest::collection::vec("[a-z0-9]{1,6}", 0..3)),
    ) {
        let socket_id = format!("{}.{}", socket.0, socket.1);
        let channel = ChannelName::new("presence-room").unwrap();
        let mut member = PresenceMember::new(user_id.clone());
        if let Some(name) = &info {
            member = member.with_info(serde_json::json!({ "name": name }));
        }
        let data = member.to_channel_data();
        let auth = authorize_channel(KEY, &secret(), &socket_id, &channel, Some(&data)).unwrap();
        let (key, signature) = auth.auth.split_once(':').unwrap();
        prop_assert_eq!(key, KEY);
        let signed = format!("{socket_id}:{channel}:{data}");
        prop_assert!(verify_hmac_sha256_hex(&secret(), signed.as_bytes(), signature));
        prop_assert_eq!(serde_json::from_str::<PresenceMember>(auth.channel_data.as_deref().unwrap()).unwrap(), member);

        let user = UserData { id: user_id, user_info: None, watchlist };
        let reply = authenticate_user(KEY, &secret(), &socket_id, &user.to_user_data()).unwrap();
        let (_, signature) = reply.auth.split_once(':').unwrap();
        let signed = format!("{socket_id}::user::{}", reply.user_data);
        prop_assert!(verify_hmac_sha256_hex(&secret(), signed.as_bytes(), signature));
        prop_assert_eq!(serde_json::from_str::<UserData>(&reply.user_data).unwrap(), user);
    }

    #[test]
    fn a_signature_verifies_only_as_the_exact_hex_digest(
        message in proptest::collection::vec(any::<u8>(), 0..80),
        claimed in prop_oneof![".{0,80}", "[0-9a-fA-F]{0,70}", " ?[0-9a-f]{64} ?"],
        upper in any::<bool>(),
    ) {
        let right = hmac_sha256_hex(&secret(), &message);
        // Hex case and surrounding blanks do not matter; any other difference does.
        let shown = if upper { right.to_uppercase() } else { right.clone() };
        let padded = format!(" {shown}\n");
        prop_assert!(verify_hmac_sha256_hex(&secret(), &message, &padded));
        prop_assert_eq!(
            verify_hmac_sha256_hex(&secret(), &message, &claimed),
            claimed.trim().eq_ignore_ascii_case(&right)
        );
    }

    #[test]
    fn deeply_nested_presence_or_user_data_is_refused_by_name(depth in 128usize..20_000) {
        let channel = ChannelName::new("presence-room").unwrap();
        let data = nested(depth, r#"{"user_id":"1"}"#);
        let err = authorize_channel(KEY, &secret(), "1.2", &channel, Some(&data)).unwrap_err();
        prop_assert_eq!(err.field(), Some("channel_data"));
        let err = authenticate_user(KEY, &secret(), "1.2", &nested(depth, r#"{"id":"1"}"#)).unwrap_err();
        prop_assert_eq!(err.field(), Some("user_data"));
        prop_assert!(serde_json::from_str::<PresenceMember>(&data).is_err());
    }

    #[test]
    fn any_encrypted_event_opens_or_is_refused_by_name(
        nonce in prop_oneof![".{0,40}", "[A-Za-z0-9+/]{30,34}={0,2}"],
        ciphertext in prop_oneof![".{0,60}", "[A-Za-z0-9+/]{0,80}={0,2}"],
    ) {
        let secret = SharedSecret::from_bytes([7; 32]);
        let payload = EncryptedPayload { nonce, ciphertext };
        let err = secret.decrypt(&payload).unwrap_err();
        match err.field() {
            Some(field) => prop_assert!(["nonce", "ciphertext"].contains(&field), "{err}"),
            None => prop_assert_eq!(err.kind(), ErrorKind::Decode),
        }
    }

    #[test]
    fn sealed_events_open_and_any_change_is_caught(
        plaintext in proptest::collection::vec(any::<u8>(), 0..200),
        channel in "private-encrypted-[a-z0-9-]{1,20}",
        master in any::<[u8; 32]>(),
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let channel = ChannelName::new(channel).unwrap();
        let secret = EncryptionMasterKey::from_bytes(master).shared_secret(&channel).unwrap();
        // The secret travels as base64 in the auth reply, and comes back the same.
        let received = SharedSecret::from_base64(&secret.to_base64()).unwrap();
        let sealed = secret.encrypt(&plaintext).unwrap();
        let wire = serde_json::to_string(&sealed).unwrap();
        let read: EncryptedPayload = serde_json::from_str(&wire).unwrap();
        prop_assert_eq!(received.decrypt(&read).unwrap(), plaintext);

        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut bytes = engine.decode(&read.ciphertext).unwrap();
        let at = flip.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let tampered = EncryptedPayload { nonce: read.nonce.clone(), ciphertext: engine.encode(&bytes) };
        let err = received.decrypt(&tampered).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::Decode);
    }

    #[test]
    fn any_shared_or_master_secret_text_decodes_or_names_its_field(text in prop_oneof![
        ".{0,60}",
        "[A-Za-z0-9+/]{40,46}={0,2}",
    ]) {
        if let Err(err) = SharedSecret::from_base64(&text) {
            prop_assert_eq!(err.field(), Some("shared_secret"));
        }
        if let Err(err) = EncryptionMasterKey::from_base64(&text) {
            prop_assert_eq!(err.kind(), ErrorKind::Config);
            prop_assert_eq!(err.variable(), Some("PUSHER_ENCRYPTION_MASTER_KEY"));
            // The value is a secret: never in the message.
            let value = text.trim();
            prop_assert!(value.len() < 12 || !err.to_string().contains(value), "{err}");
        }
    }
}
