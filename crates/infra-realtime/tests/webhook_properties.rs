//! Property tests of webhook bodies: whatever arrives, parsing never panics and a refusal is
//! an invalid-input error naming `body` (or the header that failed, or `time_ms` when the
//! webhook is too old or too far ahead); a signed webhook of any events round-trips through
//! `verify_webhook_at` at its own time, and is refused exactly when the receiver's clock is
//! further from it than the tolerance.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infra_core::hmac_sha256_hex;
use infra_core::{ChannelName, ErrorKind, Secret};
use infra_realtime::webhook::{
    DEFAULT_WEBHOOK_TOLERANCE, TIME_FIELD, Webhook, WebhookEvent, parse_webhook, verify_webhook,
    verify_webhook_at,
};
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
        // Correctly signed, the body itself is still checked (and with any tolerance, only
        // the body).
        let signature = hmac_sha256_hex(&secret(), &body);
        let verified = verify_webhook_at(KEY, &secret(), KEY, &signature, &body, Duration::MAX, SystemTime::now());
        match verified {
            Ok(hook) => prop_assert_eq!(Ok::<_, String>(hook), parse_webhook(&body).map_err(|e| e.to_string())),
            Err(err) => prop_assert_eq!(err.field(), Some("body")),
        }
        // At the default tolerance a parsed body is either fresh or refused naming time_ms.
        if let Err(err) = verify_webhook(KEY, &secret(), KEY, &signature, &body) {
            prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
            let field = err.field().unwrap_or_default();
            prop_assert!(["body", TIME_FIELD].contains(&field), "{err}");
        }
    }

    #[test]
    fn signed_webhooks_round_trip(
        time_ms in any::<u64>(),
        events in proptest::collection::vec(event(), 0..5),
    ) {
        let hook = Webhook { time_ms, events };
        let body = serde_json::to_vec(&hook).unwrap();
        let signature = hmac_sha256_hex(&secret(), &body);
        let at_its_time = UNIX_EPOCH + Duration::from_millis(time_ms);
        let verified = verify_webhook_at(KEY, &secret(), KEY, &signature, &body, DEFAULT_WEBHOOK_TOLERANCE, at_its_time)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(verified, hook);
        // Any other key or signature is refused by name before the body is read.
        let err = verify_webhook(KEY, &secret(), "other", &signature, &body).unwrap_err();
        prop_assert_eq!(err.field(), Some("X-Pusher-Key"));
        let err = verify_webhook(KEY, &secret(), KEY, &hmac_sha256_hex(&secret(), b"x"), &body).unwrap_err();
        prop_assert_eq!(err.field(), Some("X-Pusher-Signature"));
    }

    #[test]
    fn a_signed_webhook_is_refused_exactly_beyond_the_tolerance(
        time_ms in 0u64..4_000_000_000_000,
        offset_ms in -1_000_000i64..1_000_000,
        tolerance_ms in 0u64..600_000,
    ) {
        let body = format!(r#"{{"time_ms":{time_ms},"events":[]}}"#);
        let signature = hmac_sha256_hex(&secret(), body.as_bytes());
        let at = UNIX_EPOCH + Duration::from_millis(time_ms);
        let now = if offset_ms >= 0 {
            at + Duration::from_millis(offset_ms as u64)
        } else {
            at.checked_sub(Duration::from_millis(offset_ms.unsigned_abs())).unwrap_or(UNIX_EPOCH)
        };
        let distance = now
            .duration_since(at)
            .or_else(|_| at.duration_since(now))
            .unwrap();
        let tolerance = Duration::from_millis(tolerance_ms);
        let outcome = verify_webhook_at(KEY, &secret(), KEY, &signature, body.as_bytes(), tolerance, now);
        if distance <= tolerance {
            prop_assert!(outcome.is_ok(), "{distance:?} within {tolerance:?}: {outcome:?}");
        } else {
            let err = outcome.unwrap_err();
            prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
            prop_assert_eq!(err.field(), Some(TIME_FIELD));
        }
    }

    #[test]
    fn deeply_nested_client_event_data_is_refused_naming_the_body(depth in 128usize..20_000) {
        let data = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let body = format!(
            r#"{{"time_ms":1,"events":[{{"name":"client_event","channel":"private-a","event":"client-x","socket_id":"1.2","data":{data}}}]}}"#
        );
        let err = parse_webhook(body.as_bytes()).unwrap_err();
        prop_assert_eq!(err.field(), Some("body"));
    }

    #[test]
    fn any_time_and_any_clock_give_an_answer(
        time_ms in any::<u64>(),
        now_ms in any::<u64>(),
        tolerance_ms in any::<u64>(),
    ) {
        let hook = Webhook { time_ms, events: Vec::new() };
        let now = UNIX_EPOCH + Duration::from_millis(now_ms);
        let within = u128::from(time_ms.abs_diff(now_ms)) <= u128::from(tolerance_ms);
        let checked = hook.check_time(Duration::from_millis(tolerance_ms), now);
        prop_assert_eq!(checked.is_ok(), within, "{:?}", checked);
    }
}
