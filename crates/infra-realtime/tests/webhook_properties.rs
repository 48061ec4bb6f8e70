//! Property tests of webhook bodies: whatever arrives, parsing never panics and a refusal is
//! an invalid-input error naming `body` (or the header that failed); a signed webhook of any
//! events round-trips through `verify_webhook`.

use infra_core::{ChannelName, ErrorKind, Secret};
use infra_realtime::signature::hmac_hex;
use infra_realtime::webhook::{Webhook, WebhookEvent, parse_webhook, verify_webhook};
use proptest::prelude::*;

const KEY: &str = "278d425bdf160c739803";

fn secret() -> Secret<String> {
    Secret::new("7ad3773142a6692b25b8".to_owned())
}

fn channel() -> impl Strategy<Value = ChannelName> {
    "(private-|presence-|cache-)?[A-Za-z0-9_=@,.;-]{1,30}"
        .prop_map(|n| ChannelName::new(n).unwrap())
}

fn event() -> impl Strategy<Value = WebhookEvent> {
    prop_oneof![
        channel().prop_map(|channel| WebhookEvent::ChannelOccupied { channel }),
        channel().prop_map(|channel| WebhookEvent::ChannelVacated { channel }),
        (channel(), ".{1,12}")
            .prop_map(|(channel, user_id)| WebhookEvent::MemberAdded { channel, user_id }),
        (channel(), ".{1,12}")
            .prop_map(|(channel, user_id)| WebhookEvent::MemberRemoved { channel, user_id }),
        (
            channel(),
            "client-[a-z]{1,10}",
            ".{0,20}",
            "[0-9]{1,6}\\.[0-9]{1,6}",
            proptest::option::of("[a-z0-9]{1,8}"),
        )
            .prop_map(|(channel, event, data, socket_id, user_id)| {
                WebhookEvent::ClientEvent {
                    channel,
                    event,
                    data: serde_json::Value::String(data),
                    socket_id,
                    user_id,
                }
            }),
        channel().prop_map(|channel| WebhookEvent::CacheMiss { channel }),
        (channel(), any::<u32>()).prop_map(|(channel, n)| WebhookEvent::SubscriptionCount {
            channel,
            subscription_count: u64::from(n),
        }),
    ]
}

fn body_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..120),
        ".{0,80}".prop_map(String::into_bytes),
        // Near misses: the right shape with wrong or missing parts.
        (
            proptest::option::of(prop_oneof!["[0-9]{1,13}", "-1", "\"x\"", "null"]),
            "(channel_occupied|member_added|client_event|nope|)",
            "(\"channel\":\"[a-z #]{0,8}\")?",
        )
            .prop_map(|(time, name, channel)| {
                let time = time
                    .map(|t| format!("\"time_ms\":{t},"))
                    .unwrap_or_default();
                format!(
                    r#"{{{time}"events":[{{"name":"{name}"{}{channel}}}]}}"#,
                    if channel.is_empty() { "" } else { "," }
                )
                .into_bytes()
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_body_parses_or_is_refused_naming_the_body(body in body_like()) {
        if let Err(err) = parse_webhook(&body) {
            prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
            prop_assert_eq!(err.field(), Some("body"));
        }
        // Correctly signed, the body itself is still checked.
        let signature = hmac_hex(&secret(), &body);
        match verify_webhook(KEY, &secret(), KEY, &signature, &body) {
            Ok(hook) => prop_assert_eq!(Ok::<_, String>(hook), parse_webhook(&body).map_err(|e| e.to_string())),
            Err(err) => prop_assert_eq!(err.field(), Some("body")),
        }
    }

    #[test]
    fn signed_webhooks_round_trip(
        time_ms in any::<u64>(),
        events in proptest::collection::vec(event(), 0..5),
    ) {
        let hook = Webhook { time_ms, events };
        let body = serde_json::to_vec(&hook).unwrap();
        let signature = hmac_hex(&secret(), &body);
        let verified = verify_webhook(KEY, &secret(), KEY, &signature, &body)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(verified, hook);
        // Any other key or signature is refused by name before the body is read.
        let err = verify_webhook(KEY, &secret(), "other", &signature, &body).unwrap_err();
        prop_assert_eq!(err.field(), Some("X-Pusher-Key"));
        let err = verify_webhook(KEY, &secret(), KEY, &hmac_hex(&secret(), b"x"), &body).unwrap_err();
        prop_assert_eq!(err.field(), Some("X-Pusher-Signature"));
    }
}
