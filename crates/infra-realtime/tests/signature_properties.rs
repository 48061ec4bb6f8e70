//! Property tests of what the signature module reads from outside: socket ids, channel and
//! user data in auth requests, signed HTTP API requests and webhook headers and bodies. No
//! input panics; a refusal is an `InvalidInput` error naming the field; what is signed
//! verifies, and a change to it does not.

use std::collections::BTreeMap;

use infra_core::{ChannelName, ErrorKind, Secret, hmac_sha256_hex, verify_hmac_sha256_hex};
use infra_realtime::signature::{
    authenticate_user, authorize_channel, check_socket_id, sign_request, verify_request,
    verify_webhook,
};
use proptest::prelude::*;

const KEY: &str = "278d425bdf160c739803";

fn secret() -> Secret<String> {
    Secret::new("7ad3773142a6692b25b8".to_owned())
}

fn is_socket_id(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

fn socket_id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        "[0-9]{0,6}[.]?[0-9]{0,6}",
        "[0-9]{1,9}\\.[0-9]{1,9}"
    ]
}

/// An `auth` value is `key:hex signature`; the signature must verify over `signed`.
fn assert_auth_signs(auth: &str, signed: &str) -> Result<(), TestCaseError> {
    let (key, signature) = auth
        .split_once(':')
        .ok_or_else(|| TestCaseError::fail(format!("no `:` in {auth}")))?;
    prop_assert_eq!(key, KEY);
    prop_assert_eq!(signature.len(), 64);
    prop_assert!(verify_hmac_sha256_hex(
        &secret(),
        signed.as_bytes(),
        signature
    ));
    // A different message does not verify with the same signature.
    let other = format!("{signed}x");
    prop_assert!(!verify_hmac_sha256_hex(
        &secret(),
        other.as_bytes(),
        signature
    ));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn socket_ids_are_digits_dot_digits(id in socket_id_like()) {
        match check_socket_id(&id) {
            Ok(()) => prop_assert!(is_socket_id(&id), "accepted {id:?}"),
            Err(err) => {
                prop_assert!(!is_socket_id(&id), "refused {id:?}");
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                prop_assert_eq!(err.field(), Some("socket_id"));
            }
        }
    }

    #[test]
    fn channel_auth_never_panics_and_names_the_field(
        socket_id in socket_id_like(),
        channel in "(private-|presence-|private-encrypted-)?[a-z0-9]{1,10}",
        channel_data in proptest::option::of(prop_oneof![
            ".{0,40}",
            r#"\{"user_id":("[a-z0-9]{0,6}"|[0-9]{1,4}|null)(,"user_info":\{\})?\}"#,
        ]),
    ) {
        let channel = ChannelName::new(channel).unwrap();
        match authorize_channel(KEY, &secret(), &socket_id, &channel, channel_data.as_deref()) {
            Ok(auth) => {
                prop_assert!(is_socket_id(&socket_id));
                let signed = match (channel.is_presence(), &auth.channel_data) {
                    (true, Some(data)) => {
                        prop_assert_eq!(Some(data), channel_data.as_ref());
                        format!("{socket_id}:{channel}:{data}")
                    }
                    (false, None) => format!("{socket_id}:{channel}"),
                    other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
                };
                assert_auth_signs(&auth.auth, &signed)?;
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                let field = err.field().unwrap_or_default();
                prop_assert!(["socket_id", "channel", "channel_data"].contains(&field), "{err}");
            }
        }
    }

    #[test]
    fn user_auth_never_panics_and_names_the_field(
        socket_id in socket_id_like(),
        user_data in prop_oneof![
            ".{0,40}",
            r#"\{"id":("[a-z0-9]{0,6}"|[0-9]{1,4}|null|\{\})(,"name":"[a-z]{0,5}")?\}"#,
        ],
    ) {
        match authenticate_user(KEY, &secret(), &socket_id, &user_data) {
            Ok(auth) => {
                prop_assert_eq!(&auth.user_data, &user_data);
                assert_auth_signs(&auth.auth, &format!("{socket_id}::user::{user_data}"))?;
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                let field = err.field().unwrap_or_default();
                prop_assert!(["socket_id", "user_data"].contains(&field), "{err}");
            }
        }
    }

    #[test]
    fn any_webhook_is_verified_or_refused_by_header(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        header_key in prop_oneof![Just(KEY.to_owned()), ".{0,24}"],
        header_signature in prop_oneof![".{0,70}", "[0-9a-f]{64}"],
    ) {
        match verify_webhook(KEY, &secret(), &header_key, &header_signature, &body) {
            Ok(()) => {
                prop_assert_eq!(header_key.as_str(), KEY);
                prop_assert_eq!(header_signature.trim(), hmac_sha256_hex(&secret(), &body));
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                let field = err.field().unwrap_or_default();
                prop_assert!(["X-Pusher-Key", "X-Pusher-Signature"].contains(&field), "{err}");
            }
        }
    }

    #[test]
    fn signed_webhooks_verify_and_any_change_is_caught(
        body in proptest::collection::vec(any::<u8>(), 1..300),
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let signature = hmac_sha256_hex(&secret(), &body);
        prop_assert!(verify_webhook(KEY, &secret(), KEY, &signature, &body).is_ok());
        let mut tampered = body.clone();
        tampered[flip.index(body.len())] ^= 1 << bit;
        let err = verify_webhook(KEY, &secret(), KEY, &signature, &tampered).unwrap_err();
        prop_assert_eq!(err.field(), Some("X-Pusher-Signature"));
    }

    #[test]
    fn signed_requests_verify_and_any_change_is_caught(
        path in "/apps/[0-9]{1,5}/(events|batch_events|channels)",
        method in "GET|POST",
        body in proptest::collection::vec(any::<u8>(), 0..100),
        extra in proptest::collection::btree_map("[a-z_]{1,8}", "[A-Za-z0-9,._-]{0,12}", 0..4),
        timestamp in 1_000_000_000u64..2_000_000_000,
        skew in 0u64..600,
    ) {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .filter(|(k, _)| !k.starts_with("auth_") && k.as_str() != "body_md5")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body_opt = (!body.is_empty()).then_some(body.as_slice());
        let params = sign_request(KEY, &secret(), &method, &path, body_opt, timestamp, &extra);
        verify_request(KEY, &secret(), &method, &path, &params, &body, timestamp + skew)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let other_path = format!("{path}x");
        let err = verify_request(KEY, &secret(), &method, &other_path, &params, &body, timestamp)
            .unwrap_err();
        prop_assert_eq!(err.field(), Some("auth_signature"));
    }

    #[test]
    fn any_request_parameters_are_verified_or_refused_by_name(
        params in proptest::collection::btree_map(
            prop_oneof![
                Just("auth_key".to_owned()),
                Just("auth_version".to_owned()),
                Just("auth_timestamp".to_owned()),
                Just("auth_signature".to_owned()),
                Just("body_md5".to_owned()),
                "[A-Za-z_]{1,8}",
            ],
            prop_oneof![Just(KEY.to_owned()), Just("1.0".to_owned()), "[0-9]{0,12}", ".{0,70}"],
            0..7,
        ),
        body in proptest::collection::vec(any::<u8>(), 0..40),
        now in any::<u64>(),
    ) {
        let params: BTreeMap<String, String> = params;
        match verify_request(KEY, &secret(), "POST", "/apps/1/events", &params, &body, now) {
            Ok(()) => prop_assert!(params.contains_key("auth_signature")),
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                let field = err.field().unwrap_or_default();
                prop_assert!(
                    ["auth_key", "auth_version", "auth_timestamp", "auth_signature", "body_md5"]
                        .contains(&field),
                    "{err}"
                );
            }
        }
    }
}
