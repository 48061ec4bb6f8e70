//! What a channel's name prefix makes it: public, private, encrypted, presence or cache.
//!
//! Client, auth endpoint and embedded server all branch on this one classification, so the
//! prefixes are spelled out here once.

use std::fmt;

use infra_core::ChannelName;

/// The kind of a channel, from its name's prefix (Pusher's channel types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelKind {
    /// No prefix: anyone may subscribe.
    Public,
    /// `private-…`: subscribing needs a signature from the app's auth endpoint.
    Private,
    /// `private-encrypted-…`: private, and event data is end-to-end encrypted with a
    /// per-channel secret the auth endpoint hands out.
    PrivateEncrypted,
    /// `presence-…`: private, and subscribers are announced with their user data.
    Presence,
    /// `cache-…` (also `private-cache-…`, `presence-cache-…`): the last event is replayed to
    /// new subscribers. Classified by its authorization need first, so only public
    /// `cache-` channels are this kind.
    Cache,
}

impl ChannelKind {
    /// The kind of `channel`.
    pub fn of(channel: &ChannelName) -> Self {
        let name = channel.as_str();
        if name.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if name.starts_with("private-") {
            ChannelKind::Private
        } else if name.starts_with("presence-") {
            ChannelKind::Presence
        } else if name.starts_with("cache-") {
            ChannelKind::Cache
        } else {
            ChannelKind::Public
        }
    }

    /// Whether subscribing needs a signed authorization.
    pub fn needs_authorization(self) -> bool {
        matches!(
            self,
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence
        )
    }

    /// The name prefix that makes this kind (`"private-encrypted-"`, …; `""` for public).
    pub fn prefix(self) -> &'static str {
        match self {
            ChannelKind::Public => "",
            ChannelKind::Private => "private-",
            ChannelKind::PrivateEncrypted => "private-encrypted-",
            ChannelKind::Presence => "presence-",
            ChannelKind::Cache => "cache-",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelKind::Public => "public",
            ChannelKind::Private => "private",
            ChannelKind::PrivateEncrypted => "private encrypted",
            ChannelKind::Presence => "presence",
            ChannelKind::Cache => "cache",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_classify() {
        let kind = |n: &str| ChannelKind::of(&ChannelName::new(n).unwrap());
        assert_eq!(kind("team"), ChannelKind::Public);
        assert_eq!(kind("private-user-1"), ChannelKind::Private);
        assert_eq!(kind("private-encrypted-x"), ChannelKind::PrivateEncrypted);
        assert_eq!(kind("presence-room"), ChannelKind::Presence);
        assert_eq!(kind("cache-prices"), ChannelKind::Cache);
        assert_eq!(kind("private-cache-x"), ChannelKind::Private);
        assert!(kind("presence-room").needs_authorization());
        assert!(!kind("cache-prices").needs_authorization());
        for k in [
            ChannelKind::Private,
            ChannelKind::PrivateEncrypted,
            ChannelKind::Presence,
        ] {
            assert_eq!(kind(&format!("{}x", k.prefix())), k);
        }
    }
}
