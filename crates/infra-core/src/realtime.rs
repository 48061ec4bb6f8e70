//! The `Realtime` trait and its validated names.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest channel name the official Node SDK accepts.
pub const MAX_CHANNEL_NAME_LEN: usize = 200;
/// Longest event name the official Node SDK accepts.
pub const MAX_EVENT_NAME_LEN: usize = 200;

/// A Pusher channel name: 1 to 200 characters of `A-Z a-z 0-9 _ - = @ , . ;`.
///
/// ```
/// use infra_core::ChannelName;
/// let ch = ChannelName::new("private-user-42").unwrap();
/// assert!(ch.is_private());
/// assert!(ChannelName::new("bad channel").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelName(String);

impl ChannelName {
    /// Validates a channel name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() {
            return Err(Error::invalid_input("channel", "must not be empty"));
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(Error::invalid_input(
                "channel",
                format_args!(
                    "is {} characters; the limit is {MAX_CHANNEL_NAME_LEN}",
                    name.len()
                ),
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-=@,.;".contains(*c)))
        {
            return Err(Error::invalid_input(
                "channel",
                format_args!("contains `{bad}`; allowed are A-Z a-z 0-9 _ - = @ , . ;"),
            ));
        }
        Ok(ChannelName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `private-…` (encrypted channels included).
    pub fn is_private(&self) -> bool {
        self.0.starts_with("private-")
    }

    /// `private-encrypted-…`.
    pub fn is_encrypted(&self) -> bool {
        self.0.starts_with("private-encrypted-")
    }

    /// `presence-…`.
    pub fn is_presence(&self) -> bool {
        self.0.starts_with("presence-")
    }
}

impl TryFrom<String> for ChannelName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        ChannelName::new(value)
    }
}

impl From<ChannelName> for String {
    fn from(value: ChannelName) -> Self {
        value.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event name: 1 to 200 characters, not starting with the reserved `pusher:` prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventName(String);

impl EventName {
    /// Validates an event name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() {
            return Err(Error::invalid_input("event", "must not be empty"));
        }
        if name.len() > MAX_EVENT_NAME_LEN {
            return Err(Error::invalid_input(
                "event",
                format_args!(
                    "is {} characters; the limit is {MAX_EVENT_NAME_LEN}",
                    name.len()
                ),
            ));
        }
        if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
            return Err(Error::invalid_input(
                "event",
                "must not start with the reserved `pusher:` or `pusher_internal:` prefix",
            ));
        }
        Ok(EventName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        EventName::new(value)
    }
}

impl From<EventName> for String {
    fn from(value: EventName) -> Self {
        value.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One event of a batch trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEvent {
    /// The channel.
    pub channel: ChannelName,
    /// The event name.
    pub name: EventName,
    /// The payload (serialised to a JSON string on the wire).
    pub data: serde_json::Value,
}

/// Pushes events to subscribed clients.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Realtime: Send + Sync {
    /// Triggers `event` with `data` on every channel in `channels`.
    async fn trigger(
        &self,
        channels: &[ChannelName],
        event: &EventName,
        data: &serde_json::Value,
    ) -> Result<()>;

    /// Triggers several events in one call.
    async fn trigger_batch(&self, batch: &[BatchEvent]) -> Result<()>;
}

#[async_trait]
impl<T: Realtime + ?Sized> Realtime for Arc<T> {
    async fn trigger(
        &self,
        channels: &[ChannelName],
        event: &EventName,
        data: &serde_json::Value,
    ) -> Result<()> {
        (**self).trigger(channels, event, data).await
    }
    async fn trigger_batch(&self, batch: &[BatchEvent]) -> Result<()> {
        (**self).trigger_batch(batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_rules() {
        assert!(
            ChannelName::new("presence-room@1,2;x=y")
                .unwrap()
                .is_presence()
        );
        assert!(
            ChannelName::new("private-encrypted-a")
                .unwrap()
                .is_encrypted()
        );
        assert_eq!(ChannelName::new("").unwrap_err().field(), Some("channel"));
        assert!(
            ChannelName::new("#x")
                .unwrap_err()
                .to_string()
                .contains('#')
        );
        assert!(ChannelName::new("a".repeat(201)).is_err());
        assert!(ChannelName::new("a".repeat(200)).is_ok());
        let parsed: std::result::Result<ChannelName, _> = serde_json::from_str("\"a b\"");
        assert!(parsed.is_err());
    }

    #[test]
    fn event_rules() {
        assert!(EventName::new("message").is_ok());
        assert!(EventName::new("pusher:subscribe").is_err());
        assert_eq!(EventName::new("").unwrap_err().field(), Some("event"));
        assert!(EventName::new("e".repeat(201)).is_err());
    }
}
