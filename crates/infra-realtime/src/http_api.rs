//! The request options and replies of Pusher's HTTP API beyond triggering: channel queries,
//! trigger options. The client sends and parses these; a Pusher-compatible server answers
//! with them.

use std::collections::BTreeMap;

use infra_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// An attribute a query or a trigger may ask for with `info=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelAttribute {
    /// Distinct users on a presence channel (presence channels only).
    UserCount,
    /// Sockets subscribed (needs subscription counting enabled in the Pusher dashboard).
    SubscriptionCount,
}

impl ChannelAttribute {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelAttribute::UserCount => "user_count",
            ChannelAttribute::SubscriptionCount => "subscription_count",
        }
    }
}

/// The `info` parameter: attribute names joined by commas, each once; `None` when empty.
pub fn info_param(attributes: &[ChannelAttribute]) -> Option<String> {
    let mut names: Vec<&str> = Vec::new();
    for a in attributes {
        if !names.contains(&a.as_str()) {
            names.push(a.as_str());
        }
    }
    (!names.is_empty()).then(|| names.join(","))
}

/// What [`channels`](crate::PusherClient::channels) lists: occupied channels, optionally only
/// those whose name starts with a prefix, optionally with attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelsQuery {
    /// Only channels whose name starts with this (`filter_by_prefix`).
    pub prefix: Option<String>,
    /// Attributes to return per channel (`info`). `user_count` needs a `presence-` prefix.
    pub info: Vec<ChannelAttribute>,
}

impl ChannelsQuery {
    /// Every occupied channel.
    pub fn all() -> Self {
        ChannelsQuery::default()
    }

    /// Occupied channels whose name starts with `prefix`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        ChannelsQuery {
            prefix: Some(prefix.into()),
            info: Vec::new(),
        }
    }

    /// Also returns `attribute` per channel.
    pub fn with_info(mut self, attribute: ChannelAttribute) -> Self {
        self.info.push(attribute);
        self
    }

    /// The query's parameters; refuses `user_count` without a `presence-` prefix, as the API
    /// would.
    pub fn params(&self) -> Result<Vec<(&'static str, String)>> {
        if self.info.contains(&ChannelAttribute::UserCount)
            && !self
                .prefix
                .as_deref()
                .is_some_and(|p| p.starts_with("presence-"))
        {
            return Err(Error::invalid_input(
                "info",
                "asks for user_count, which needs the prefix filter `presence-`",
            ));
        }
        let mut params = Vec::new();
        if let Some(prefix) = &self.prefix {
            params.push(("filter_by_prefix", prefix.clone()));
        }
        if let Some(info) = info_param(&self.info) {
            params.push(("info", info));
        }
        Ok(params)
    }
}

/// Attributes of one channel in a listing or a trigger reply; each present only when asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAttributes {
    /// Distinct users (presence channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_count: Option<u64>,
    /// Subscribed sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<u64>,
}

/// The reply of `GET /channels`: occupied channels by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelsList {
    /// Occupied channels and the attributes asked for.
    pub channels: BTreeMap<String, ChannelAttributes>,
}

/// The reply of `GET /channels/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Whether anyone is subscribed.
    pub occupied: bool,
    /// Distinct users (presence channels, when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_count: Option<u64>,
    /// Subscribed sockets (when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_count: Option<u64>,
}

/// One user of a presence channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUser {
    /// The user's id.
    pub id: String,
}

/// The reply of `GET /channels/{name}/users`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUsers {
    /// The users present.
    pub users: Vec<PresenceUser>,
}

/// Options of [`trigger_with`](crate::PusherClient::trigger_with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TriggerOptions {
    /// A socket not to deliver the event to: the one whose action caused it.
    pub socket_id: Option<String>,
    /// Attributes of the channels to return (`info`).
    pub info: Vec<ChannelAttribute>,
}

impl TriggerOptions {
    /// Excludes the socket `socket_id` (`1234.5678`) from delivery.
    pub fn excluding(socket_id: impl Into<String>) -> Self {
        TriggerOptions {
            socket_id: Some(socket_id.into()),
            info: Vec::new(),
        }
    }

    /// Also returns `attribute` of each channel.
    pub fn with_info(mut self, attribute: ChannelAttribute) -> Self {
        self.info.push(attribute);
        self
    }
}

/// The reply of a trigger: the channels' attributes when `info` asked for some.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerReply {
    /// Attributes by channel name (empty without `info`).
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelAttributes>,
}

/// Checks a user id used in a URL path: 1 to 200 characters of
/// `A-Z a-z 0-9 _ - = @ , . ; :` (no `/`, `?`, `%` or spaces).
pub fn check_user_id(user_id: &str) -> Result<()> {
    if user_id.is_empty() || user_id.len() > 200 {
        return Err(Error::invalid_input(
            "user_id",
            "must be 1 to 200 characters",
        ));
    }
    if let Some(bad) = user_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-=@,.;:".contains(*c)))
    {
        return Err(Error::invalid_input(
            "user_id",
            format_args!("contains `{bad}`; allowed are A-Z a-z 0-9 _ - = @ , . ; :"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_query_params() {
        assert!(ChannelsQuery::all().params().unwrap().is_empty());
        let q = ChannelsQuery::with_prefix("presence-")
            .with_info(ChannelAttribute::UserCount)
            .with_info(ChannelAttribute::SubscriptionCount)
            .with_info(ChannelAttribute::UserCount);
        assert_eq!(
            q.params().unwrap(),
            [
                ("filter_by_prefix", "presence-".to_owned()),
                ("info", "user_count,subscription_count".to_owned())
            ]
        );
        let bad = ChannelsQuery::with_prefix("private-").with_info(ChannelAttribute::UserCount);
        assert_eq!(bad.params().unwrap_err().field(), Some("info"));
    }

    #[test]
    fn user_ids() {
        assert!(check_user_id("user_42@example.com").is_ok());
        for bad in ["", "a/b", "a b", "a?b", "%2F"] {
            assert_eq!(
                check_user_id(bad).unwrap_err().field(),
                Some("user_id"),
                "{bad}"
            );
        }
    }
}
