//! What a subscription carries from the connection into the hub, and what refuses it.

use serde_json::Value;

/// A presence identity: the user id (as a string) and its `user_info`, as the app signed them
/// in the channel authorization.
#[derive(Debug)]
pub(crate) struct Presence {
    pub user_id: String,
    pub user_info: Value,
}

/// Why a subscription was refused: an HTTP-like status and a message, sent to the client as
/// `pusher:subscription_error`.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub message: String,
}
