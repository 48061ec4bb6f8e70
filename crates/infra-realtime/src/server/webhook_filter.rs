//! Which webhooks an app wants: the kinds (as Pusher's dashboard groups them) and the channel
//! name prefixes they are about. Pusher sends a webhook only for the kinds an app turned on and,
//! when it set a channel filter, only for channels that match it.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use infra_core::{Env, Error, Result};
use serde::{Deserialize, Deserializer};

use super::webhook_event::WebhookEvent;

/// The variable naming the kinds of webhooks sent (comma separated).
pub const WEBHOOK_EVENTS_VAR: &str = "INFRA_REALTIME_WEBHOOK_EVENTS";
/// The variable naming the channel prefixes webhooks are sent for (comma separated).
pub const WEBHOOK_CHANNEL_PREFIXES_VAR: &str = "INFRA_REALTIME_WEBHOOK_CHANNEL_PREFIXES";

/// A kind of webhook, as Pusher's dashboard names the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum WebhookKind {
    /// `channel_occupied` and `channel_vacated`.
    ChannelExistence,
    /// `member_added` and `member_removed`.
    Presence,
    /// `client_event`.
    ClientEvents,
    /// `cache_miss`.
    CacheMiss,
    /// `subscription_count`.
    SubscriptionCount,
}

impl WebhookKind {
    /// Every kind, in the order of Pusher's dashboard.
    pub const ALL: [WebhookKind; 5] = [
        WebhookKind::ChannelExistence,
        WebhookKind::Presence,
        WebhookKind::ClientEvents,
        WebhookKind::CacheMiss,
        WebhookKind::SubscriptionCount,
    ];

    /// The name used in `INFRA_REALTIME_WEBHOOK_EVENTS` and apps files.
    pub fn name(self) -> &'static str {
        match self {
            WebhookKind::ChannelExistence => "channel_existence",
            WebhookKind::Presence => "presence",
            WebhookKind::ClientEvents => "client_events",
            WebhookKind::CacheMiss => "cache_miss",
            WebhookKind::SubscriptionCount => "subscription_count",
        }
    }
}

impl fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WebhookKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        WebhookKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = WebhookKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown webhook kind {s:?}; one of {}", names.join(", "))
            })
    }
}

impl<'de> Deserialize<'de> for WebhookKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Which webhooks go out: by default every kind for every channel (Pusher sends what an app
/// turned on, with no channel filter unless one is set).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WebhookFilter {
    /// The kinds sent.
    pub events: BTreeSet<WebhookKind>,
    /// The channel name prefixes sent for; empty: every channel.
    pub channel_prefixes: Vec<String>,
}

impl Default for WebhookFilter {
    fn default() -> Self {
        WebhookFilter {
            events: WebhookKind::ALL.into_iter().collect(),
            channel_prefixes: Vec::new(),
        }
    }
}

impl WebhookFilter {
    /// Only the `kinds` given, for every channel.
    pub fn kinds(kinds: impl IntoIterator<Item = WebhookKind>) -> Self {
        WebhookFilter {
            events: kinds.into_iter().collect(),
            channel_prefixes: Vec::new(),
        }
    }

    /// Only for channels whose names start with one of `prefixes`.
    pub fn with_channel_prefixes(
        mut self,
        prefixes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.channel_prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// The filter of `INFRA_REALTIME_WEBHOOK_EVENTS` and
    /// `INFRA_REALTIME_WEBHOOK_CHANNEL_PREFIXES`; the default for what is unset.
    pub fn from_env(env: &Env) -> Result<Self> {
        let mut filter = WebhookFilter::default();
        if env.is_set(WEBHOOK_EVENTS_VAR) {
            filter.events = env
                .list(WEBHOOK_EVENTS_VAR)
                .iter()
                .map(|name| name.parse())
                .collect::<std::result::Result<_, String>>()
                .map_err(|problem| Error::config(WEBHOOK_EVENTS_VAR, problem))?;
        }
        filter.channel_prefixes = env.list(WEBHOOK_CHANNEL_PREFIXES_VAR);
        Ok(filter)
    }

    /// Whether `event` goes out.
    pub(crate) fn allows(&self, event: &WebhookEvent) -> bool {
        self.events.contains(&event.kind())
            && (self.channel_prefixes.is_empty()
                || self
                    .channel_prefixes
                    .iter()
                    .any(|prefix| event.channel().starts_with(prefix.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_prefixes_filter() {
        let filter = WebhookFilter::kinds([WebhookKind::Presence, WebhookKind::ClientEvents])
            .with_channel_prefixes(["presence-", "private-chat-"]);
        let added = WebhookEvent::MemberAdded {
            channel: "presence-room".into(),
            user_id: "1".into(),
        };
        let occupied = WebhookEvent::ChannelOccupied {
            channel: "presence-room".into(),
        };
        let elsewhere = WebhookEvent::MemberAdded {
            channel: "presence2".into(),
            user_id: "1".into(),
        };
        assert!(filter.allows(&added));
        assert!(!filter.allows(&occupied));
        assert!(!filter.allows(&elsewhere));
        assert!(WebhookFilter::default().allows(&occupied));
    }

    #[test]
    fn from_env_names_the_variable() {
        let env = Env::from_pairs([
            (WEBHOOK_EVENTS_VAR, "presence, cache_miss"),
            (WEBHOOK_CHANNEL_PREFIXES_VAR, "presence-"),
        ]);
        let filter = WebhookFilter::from_env(&env).unwrap();
        assert_eq!(
            filter.events,
            [WebhookKind::Presence, WebhookKind::CacheMiss]
                .into_iter()
                .collect()
        );
        assert_eq!(filter.channel_prefixes, ["presence-"]);
        assert_eq!(
            WebhookFilter::from_env(&Env::empty()).unwrap(),
            WebhookFilter::default()
        );
        let bad = Env::from_pairs([(WEBHOOK_EVENTS_VAR, "presence,members")]);
        let err = WebhookFilter::from_env(&bad).unwrap_err();
        assert_eq!(err.variable(), Some(WEBHOOK_EVENTS_VAR));
        assert!(err.to_string().contains("members"), "{err}");
    }
}
