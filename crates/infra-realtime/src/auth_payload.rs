//! The JSON an app's auth endpoint answers pusher-js with, and the user data it signs.
//!
//! Shared by the signing functions, the auth router and the embedded server, which checks
//! the same signatures when a socket subscribes.

use serde::{Deserialize, Serialize};

/// The reply to a channel authorization request, exactly as pusher-js reads it:
/// `{"auth"}` for a private channel, `{"auth", "channel_data"}` for a presence channel,
/// `{"auth", "shared_secret"}` for an encrypted channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAuth {
    /// `key:signature`.
    pub auth: String,
    /// The signed presence data, exactly as signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
    /// The channel's base64 secret, for `private-encrypted-` channels only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
}

/// The reply to a user sign-in request: `{"auth", "user_data"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAuth {
    /// `key:signature`.
    pub auth: String,
    /// The signed user data, exactly as signed.
    pub user_data: String,
}

/// A member of a presence channel: who they are and what other members see of them.
/// Signed as the `channel_data` `{"user_id", "user_info"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceMember {
    /// The app's id of the user; unique per user, shared by all their sockets.
    pub user_id: String,
    /// What other members see (name, avatar, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<serde_json::Value>,
}

impl PresenceMember {
    /// A member without user info.
    pub fn new(user_id: impl Into<String>) -> Self {
        PresenceMember {
            user_id: user_id.into(),
            user_info: None,
        }
    }

    /// Adds what other members see of this user.
    pub fn with_info(mut self, user_info: serde_json::Value) -> Self {
        self.user_info = Some(user_info);
        self
    }

    /// The `channel_data` string to sign and send back.
    pub fn to_channel_data(&self) -> String {
        // Serialising a struct of a string and a JSON value cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A signed-in user (`pusher:signin`): the `user_data` `{"id", "user_info"?, "watchlist"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserData {
    /// The app's id of the user; [`crate::PusherClient::terminate_user_connections`] takes it.
    pub id: String,
    /// Anything the app wants other users to see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<serde_json::Value>,
    /// Ids of users whose online status this user follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchlist: Option<Vec<String>>,
}

impl UserData {
    /// A user known by `id` only.
    pub fn new(id: impl Into<String>) -> Self {
        UserData {
            id: id.into(),
            user_info: None,
            watchlist: None,
        }
    }

    /// The `user_data` string to sign and send back.
    pub fn to_user_data(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shapes() {
        let private = ChannelAuth {
            auth: "k:s".into(),
            channel_data: None,
            shared_secret: None,
        };
        assert_eq!(
            serde_json::to_value(&private).unwrap(),
            json!({"auth": "k:s"})
        );
        assert_eq!(
            PresenceMember::new("10")
                .with_info(json!({"name": "Mr. Channels"}))
                .to_channel_data(),
            r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#
        );
        assert_eq!(UserData::new("12345").to_user_data(), r#"{"id":"12345"}"#);
    }
}
