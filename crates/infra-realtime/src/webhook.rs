//! Pusher's webhooks, verified and typed.
//!
//! Pusher POSTs `{"time_ms", "events": [...]}` with `X-Pusher-Key` (the app key) and
//! `X-Pusher-Signature` (hex HMAC-SHA256 of the raw body with the app secret). Answer 2xx
//! quickly: Pusher retries anything else with backoff, for five minutes.
//!
//! The signature covers the body only, so a captured delivery stays correctly signed forever;
//! `time_ms` (inside the signed body) is what dates it. A webhook further than the tolerance
//! ([`DEFAULT_WEBHOOK_TOLERANCE`], `PUSHER_WEBHOOK_TOLERANCE`) from the receiver's clock,
//! either way, is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infra_core::{ChannelName, Env, Error, Result, Secret, format_duration};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::signature;

/// The header carrying the app key.
pub const KEY_HEADER: &str = "X-Pusher-Key";
/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Pusher-Signature";
/// The body's field dating the webhook, as errors about its age name it.
pub const TIME_FIELD: &str = "time_ms";

/// How far a webhook's `time_ms` may lie from the receiver's clock, either way, unless
/// configured: five minutes, the time Pusher keeps retrying an unanswered webhook.
pub const DEFAULT_WEBHOOK_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The variable that sets the tolerance (a duration such as `5m` or `90s`).
pub const WEBHOOK_TOLERANCE_VARIABLE: &str = "PUSHER_WEBHOOK_TOLERANCE";

/// The tolerance `PUSHER_WEBHOOK_TOLERANCE` sets, else [`DEFAULT_WEBHOOK_TOLERANCE`]; a
/// config error naming the variable when it is not a duration or is zero.
pub fn webhook_tolerance_from_env(env: &Env) -> Result<Duration> {
    match env.duration(WEBHOOK_TOLERANCE_VARIABLE)? {
        None => Ok(DEFAULT_WEBHOOK_TOLERANCE),
        Some(zero) if zero.is_zero() => Err(Error::config(
            WEBHOOK_TOLERANCE_VARIABLE,
            "must be longer than zero (it is how old a webhook may be)",
        )),
        Some(tolerance) => Ok(tolerance),
    }
}

/// One verified webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    /// When Pusher created it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The events, oldest first.
    pub events: Vec<WebhookEvent>,
}

/// One event of a webhook, by its `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WebhookEvent {
    /// A channel got its first subscriber.
    ChannelOccupied {
        /// The channel.
        channel: ChannelName,
    },
    /// A channel lost its last subscriber.
    ChannelVacated {
        /// The channel.
        channel: ChannelName,
    },
    /// A user joined a presence channel (their first socket on it).
    MemberAdded {
        /// The presence channel.
        channel: ChannelName,
        /// The user's id.
        user_id: String,
    },
    /// A user left a presence channel (their last socket on it).
    MemberRemoved {
        /// The presence channel.
        channel: ChannelName,
        /// The user's id.
        user_id: String,
    },
    /// A client sent a `client-` event on a private or presence channel.
    ClientEvent {
        /// The channel.
        channel: ChannelName,
        /// The client event's name (`client-…`).
        event: String,
        /// The event's data as the client sent it.
        data: Value,
        /// The sender's socket.
        socket_id: String,
        /// The sender's user id, on presence channels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A client subscribed to a `cache-` channel that had no cached event.
    CacheMiss {
        /// The channel.
        channel: ChannelName,
    },
    /// A channel's subscription count changed.
    SubscriptionCount {
        /// The channel.
        channel: ChannelName,
        /// Sockets now subscribed.
        subscription_count: u64,
    },
}

impl Webhook {
    /// Checks that `time_ms` lies within `tolerance` of `now`, either way: an older webhook
    /// may be a captured delivery sent again, a later one was stamped by a clock far off.
    /// Otherwise an invalid-input error naming `time_ms`.
    pub fn check_time(&self, tolerance: Duration, now: SystemTime) -> Result<()> {
        // In u128 milliseconds: no sum or difference here can overflow.
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let at_ms = u128::from(self.time_ms);
        let tolerance_ms = tolerance.as_millis();
        let off = |ms: u128| format_duration(Duration::from_millis(ms.min(u64::MAX.into()) as u64));
        if at_ms + tolerance_ms < now_ms {
            return Err(Error::invalid_input(
                TIME_FIELD,
                format_args!(
                    "is {} old, more than the tolerance of {} ({WEBHOOK_TOLERANCE_VARIABLE}): \
                     refused as a possible replay",
                    off(now_ms - at_ms),
                    format_duration(tolerance)
                ),
            ));
        }
        if at_ms > now_ms + tolerance_ms {
            return Err(Error::invalid_input(
                TIME_FIELD,
                format_args!(
                    "is {} ahead of this server's clock, more than the tolerance of {} \
                     ({WEBHOOK_TOLERANCE_VARIABLE})",
                    off(at_ms - now_ms),
                    format_duration(tolerance)
                ),
            ));
        }
        Ok(())
    }
}

impl WebhookEvent {
    /// The channel the event is about.
    pub fn channel(&self) -> &ChannelName {
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::MemberAdded { channel, .. }
            | WebhookEvent::MemberRemoved { channel, .. }
            | WebhookEvent::ClientEvent { channel, .. }
            | WebhookEvent::CacheMiss { channel }
            | WebhookEvent::SubscriptionCount { channel, .. } => channel,
        }
    }
}

/// Checks a webhook's key and signature (in constant time), parses its events, and checks
/// that it is no further than [`DEFAULT_WEBHOOK_TOLERANCE`] from now.
///
/// A wrong key or signature is an invalid-input error naming the header; a body that is not
/// a webhook is an invalid-input error naming `body`; a stale or future webhook is an
/// invalid-input error naming `time_ms`.
pub fn verify_webhook(
    key: &str,
    secret: &Secret<String>,
    header_key: &str,
    header_signature: &str,
    body: &[u8],
) -> Result<Webhook> {
    verify_webhook_at(
        key,
        secret,
        header_key,
        header_signature,
        body,
        DEFAULT_WEBHOOK_TOLERANCE,
        SystemTime::now(),
    )
}

/// As [`verify_webhook`], with the tolerance and the receiver's clock given.
pub fn verify_webhook_at(
    key: &str,
    secret: &Secret<String>,
    header_key: &str,
    header_signature: &str,
    body: &[u8],
    tolerance: Duration,
    now: SystemTime,
) -> Result<Webhook> {
    signature::verify_webhook(key, secret, header_key, header_signature, body)?;
    let hook = parse_webhook(body)?;
    hook.check_time(tolerance, now)?;
    Ok(hook)
}

/// Parses a webhook body that has already been verified.
pub fn parse_webhook(body: &[u8]) -> Result<Webhook> {
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid_input("body", format_args!("is not a Pusher webhook: {e}")))
}

#[cfg(test)]
mod tests {
    //! The body and signature from Pusher's webhook documentation example, recomputed.
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SIGNATURE: &str = "709fdb84c03664445f7698120b0edf0acc1ab1c8c6e93a0368c61841d6b998aa";
    const BODY: &[u8] = br#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;

    fn secret() -> Secret<String> {
        Secret::new("7ad3773142a6692b25b8".to_owned())
    }

    /// The documented example's own moment, plus `ms`.
    fn example_time_plus(ms: i64) -> SystemTime {
        let at = UNIX_EPOCH + Duration::from_millis(1327078148132);
        if ms >= 0 {
            at + Duration::from_millis(ms as u64)
        } else {
            at - Duration::from_millis(ms.unsigned_abs())
        }
    }

    #[test]
    fn documented_vector_verifies_and_parses() {
        let secret = secret();
        let body = BODY;
        let hook = verify_webhook_at(
            KEY,
            &secret,
            KEY,
            SIGNATURE,
            body,
            DEFAULT_WEBHOOK_TOLERANCE,
            example_time_plus(1_000),
        )
        .unwrap();
        assert_eq!(hook.time_ms, 1327078148132);
        assert_eq!(
            hook.events,
            [WebhookEvent::ChannelOccupied {
                channel: ChannelName::new("test_channel").unwrap()
            }]
        );
        let bad = verify_webhook(KEY, &secret, KEY, "00", body).unwrap_err();
        assert_eq!(bad.field(), Some(SIGNATURE_HEADER));
    }

    #[test]
    fn a_webhook_beyond_the_tolerance_either_way_is_refused_naming_time_ms() {
        let at = |ms| {
            verify_webhook_at(
                KEY,
                &secret(),
                KEY,
                SIGNATURE,
                BODY,
                DEFAULT_WEBHOOK_TOLERANCE,
                example_time_plus(ms),
            )
        };
        for ms in [0, 300_000, -300_000, 299_999] {
            assert!(at(ms).is_ok(), "{ms}");
        }
        let stale = at(300_001).unwrap_err();
        assert_eq!(stale.field(), Some(TIME_FIELD));
        assert!(
            stale
                .message()
                .contains("300.001s old, more than the tolerance of 5m"),
            "{stale}"
        );
        assert!(
            stale.message().contains(WEBHOOK_TOLERANCE_VARIABLE),
            "{stale}"
        );
        let ahead = at(-360_000).unwrap_err();
        assert_eq!(ahead.field(), Some(TIME_FIELD));
        assert!(ahead.message().contains("6m ahead"), "{ahead}");
        // Today, Pusher's example from 2012 is a replay.
        let replayed = verify_webhook(KEY, &secret(), KEY, SIGNATURE, BODY).unwrap_err();
        assert_eq!(replayed.field(), Some(TIME_FIELD));
        // The signature is checked first: a forged body learns nothing about the clock.
        let forged = verify_webhook_at(KEY, &secret(), KEY, "00", BODY, Duration::ZERO, UNIX_EPOCH)
            .unwrap_err();
        assert_eq!(forged.field(), Some(SIGNATURE_HEADER));
        // Extremes of both clocks and of the tolerance: an answer, never an overflow.
        let far = Webhook {
            time_ms: u64::MAX,
            events: Vec::new(),
        };
        assert!(far.check_time(Duration::MAX, UNIX_EPOCH).is_ok());
        assert!(far.check_time(Duration::ZERO, UNIX_EPOCH).is_err());
        let epoch = Webhook {
            time_ms: 0,
            events: Vec::new(),
        };
        assert!(epoch.check_time(Duration::ZERO, UNIX_EPOCH).is_ok());
        assert!(epoch.check_time(Duration::MAX, SystemTime::now()).is_ok());
    }

    #[test]
    fn the_tolerance_comes_from_the_environment() {
        assert_eq!(
            webhook_tolerance_from_env(&Env::empty()).unwrap(),
            DEFAULT_WEBHOOK_TOLERANCE
        );
        let env = Env::from_pairs([(WEBHOOK_TOLERANCE_VARIABLE, "90s")]);
        assert_eq!(
            webhook_tolerance_from_env(&env).unwrap(),
            Duration::from_secs(90)
        );
        for bad in ["0", "soon"] {
            let env = Env::from_pairs([(WEBHOOK_TOLERANCE_VARIABLE, bad)]);
            let err = webhook_tolerance_from_env(&env).unwrap_err();
            assert_eq!(err.variable(), Some(WEBHOOK_TOLERANCE_VARIABLE), "{bad}");
        }
    }

    #[test]
    fn every_event_kind_parses() {
        let body = serde_json::json!({"time_ms": 1, "events": [
            {"name": "channel_vacated", "channel": "a"},
            {"name": "member_added", "channel": "presence-a", "user_id": "1"},
            {"name": "member_removed", "channel": "presence-a", "user_id": "1"},
            {"name": "client_event", "channel": "private-a", "event": "client-typing",
             "data": "{\"x\":1}", "socket_id": "1.2", "user_id": "7"},
            {"name": "cache_miss", "channel": "cache-a"},
            {"name": "subscription_count", "channel": "a", "subscription_count": 3}
        ]});
        let hook = parse_webhook(body.to_string().as_bytes()).unwrap();
        assert_eq!(hook.events.len(), 6);
        assert!(matches!(
            &hook.events[3],
            WebhookEvent::ClientEvent { event, user_id: Some(u), .. } if event == "client-typing" && u == "7"
        ));
        assert!(matches!(
            hook.events[5],
            WebhookEvent::SubscriptionCount {
                subscription_count: 3,
                ..
            }
        ));
        assert_eq!(hook.events[1].channel().as_str(), "presence-a");
        let err = parse_webhook(br#"{"time_ms":1,"events":[{"name":"nope"}]}"#).unwrap_err();
        assert_eq!(err.field(), Some("body"));
    }
}
