//! The events a server sends its app's webhook, as Pusher names and shapes them.

use serde_json::{Value, json};

use super::webhook_filter::WebhookKind;

/// One webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WebhookEvent {
    ChannelOccupied {
        channel: String,
    },
    ChannelVacated {
        channel: String,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    ClientEvent {
        channel: String,
        event: String,
        data: String,
        socket_id: String,
        user_id: Option<String>,
    },
    CacheMiss {
        channel: String,
    },
    SubscriptionCount {
        channel: String,
        subscription_count: usize,
    },
}

impl WebhookEvent {
    /// The event as it goes into a delivery's `events`.
    pub fn to_json(&self) -> Value {
        match self {
            WebhookEvent::ChannelOccupied { channel } => {
                json!({"name": "channel_occupied", "channel": channel})
            }
            WebhookEvent::ChannelVacated { channel } => {
                json!({"name": "channel_vacated", "channel": channel})
            }
            WebhookEvent::MemberAdded { channel, user_id } => {
                json!({"name": "member_added", "channel": channel, "user_id": user_id})
            }
            WebhookEvent::MemberRemoved { channel, user_id } => {
                json!({"name": "member_removed", "channel": channel, "user_id": user_id})
            }
            WebhookEvent::ClientEvent {
                channel,
                event,
                data,
                socket_id,
                user_id,
            } => {
                let mut v = json!({"name": "client_event", "channel": channel, "event": event,
                    "data": data, "socket_id": socket_id});
                if let Some(user_id) = user_id {
                    v["user_id"] = json!(user_id);
                }
                v
            }
            WebhookEvent::CacheMiss { channel } => {
                json!({"name": "cache_miss", "channel": channel})
            }
            WebhookEvent::SubscriptionCount {
                channel,
                subscription_count,
            } => json!({"name": "subscription_count", "channel": channel,
                "subscription_count": subscription_count}),
        }
    }

    /// The group of Pusher's dashboard the event belongs to.
    pub fn kind(&self) -> WebhookKind {
        match self {
            WebhookEvent::ChannelOccupied { .. } | WebhookEvent::ChannelVacated { .. } => {
                WebhookKind::ChannelExistence
            }
            WebhookEvent::MemberAdded { .. } | WebhookEvent::MemberRemoved { .. } => {
                WebhookKind::Presence
            }
            WebhookEvent::ClientEvent { .. } => WebhookKind::ClientEvents,
            WebhookEvent::CacheMiss { .. } => WebhookKind::CacheMiss,
            WebhookEvent::SubscriptionCount { .. } => WebhookKind::SubscriptionCount,
        }
    }

    /// The channel the event is about.
    pub fn channel(&self) -> &str {
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

    /// `channel_vacated` / `member_removed`: held back by the leave delay.
    pub fn is_leave(&self) -> bool {
        matches!(
            self,
            WebhookEvent::ChannelVacated { .. } | WebhookEvent::MemberRemoved { .. }
        )
    }
}
