//! Pusher's webhooks, verified and typed.
//!
//! Pusher POSTs `{"time_ms", "events": [...]}` with `X-Pusher-Key` (the app key) and
//! `X-Pusher-Signature` (hex HMAC-SHA256 of the raw body with the app secret). Answer 2xx
//! quickly: Pusher retries anything else with backoff.

use infra_core::{ChannelName, Error, Result, Secret};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::signature;

/// The header carrying the app key.
pub const KEY_HEADER: &str = "X-Pusher-Key";
/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Pusher-Signature";

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

/// Checks a webhook's key and signature (in constant time) and parses its events.
///
/// A wrong key or signature is an invalid-input error naming the header; a body that is not
/// a webhook is an invalid-input error naming `body`.
pub fn verify_webhook(
    key: &str,
    secret: &Secret<String>,
    header_key: &str,
    header_signature: &str,
    body: &[u8],
) -> Result<Webhook> {
    signature::verify_webhook(key, secret, header_key, header_signature, body)?;
    parse_webhook(body)
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

    #[test]
    fn documented_vector_verifies_and_parses() {
        let secret = Secret::new("7ad3773142a6692b25b8".to_owned());
        let body = br#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
        let hook = verify_webhook(
            KEY,
            &secret,
            KEY,
            "709fdb84c03664445f7698120b0edf0acc1ab1c8c6e93a0368c61841d6b998aa",
            body,
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
