//! The Pusher WebSocket protocol's frames and close codes (protocol 7, read by versions 5–7).
//!
//! Facts from Pusher's public protocol description
//! (<https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/>):
//! frames are JSON text `{"event", "channel"?, "data"}`; server→client `data` is a
//! JSON-encoded string; clients send `data` as an object (pusher-js) or a string.

use serde::Deserialize;
use serde_json::{Value, json};

/// Lowest protocol version the server speaks.
pub const MIN_PROTOCOL: u32 = 5;
/// Highest protocol version the server speaks.
pub const MAX_PROTOCOL: u32 = 7;

/// Close and error codes of the protocol.
///
/// 4000–4099: the client must not reconnect; 4100–4199: reconnect after a back-off;
/// 4200–4299: reconnect now; 4300–4399: other errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCode {
    /// 4001: no app has this key.
    UnknownApp,
    /// 4006: the `protocol` parameter is not a number.
    InvalidVersion,
    /// 4007: the protocol version is outside 5–7.
    UnsupportedProtocol,
    /// 4008: no `protocol` parameter.
    NoProtocol,
    /// 4009: the connection is not (or no longer) authorized, e.g. its user was terminated.
    Unauthorized,
    /// 4100: the app or server is at its connection limit.
    OverCapacity,
    /// 4200: the server is going away (restart); reconnect.
    GoingAway,
    /// 4201: a ping went unanswered.
    PongTimeout,
    /// 4301: client events beyond the per-connection rate (sent as an error, not a close).
    ClientEventRateLimit,
    /// 4300: a frame the server cannot accept (not JSON, not a frame, too large).
    InvalidMessage,
    /// 4100 too: the client reads slower than its events arrive: its queue filled (in frames
    /// or bytes), or a write did not finish within the write timeout.
    SlowClient,
}

impl CloseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::UnknownApp => 4001,
            CloseCode::InvalidVersion => 4006,
            CloseCode::UnsupportedProtocol => 4007,
            CloseCode::NoProtocol => 4008,
            CloseCode::Unauthorized => 4009,
            CloseCode::OverCapacity | CloseCode::SlowClient => 4100,
            CloseCode::GoingAway => 4200,
            CloseCode::PongTimeout => 4201,
            CloseCode::InvalidMessage => 4300,
            CloseCode::ClientEventRateLimit => 4301,
        }
    }

    /// The message sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::UnknownApp => "Application does not exist",
            CloseCode::InvalidVersion => "Invalid version string format",
            CloseCode::UnsupportedProtocol => "Unsupported protocol version",
            CloseCode::NoProtocol => "No protocol version supplied",
            CloseCode::Unauthorized => "Connection is unauthorized",
            CloseCode::OverCapacity => "Over capacity",
            CloseCode::SlowClient => "Client too slow: frames were not read in time",
            CloseCode::GoingAway => "Server is restarting",
            CloseCode::PongTimeout => "Pong reply not received",
            CloseCode::InvalidMessage => "Invalid message",
            CloseCode::ClientEventRateLimit => "Client event rejected due to rate limit",
        }
    }
}

/// A frame from a client.
#[derive(Debug, Deserialize)]
pub(crate) struct ClientFrame {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub data: Value,
}

impl ClientFrame {
    /// `data` as an object, whether the client sent an object or a JSON-encoded string.
    pub fn data_object(&self) -> Value {
        match &self.data {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            other => other.clone(),
        }
    }
}

/// A server frame: `data` is JSON-encoded into a string.
pub(crate) fn frame(event: &str, channel: Option<&str>, data: &Value) -> String {
    let data = match data {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match channel {
        Some(channel) => json!({"event": event, "channel": channel, "data": data}).to_string(),
        None => json!({"event": event, "data": data}).to_string(),
    }
}

/// `pusher:error {code, message}`.
pub(crate) fn error_frame(code: Option<u16>, message: &str) -> String {
    frame(
        "pusher:error",
        None,
        &json!({"code": code, "message": message}),
    )
}

/// `pusher:subscription_error` for `channel` (the shape pusher-js hands to its binders).
pub(crate) fn subscription_error(channel: &str, status: u16, error: &str) -> String {
    frame(
        "pusher:subscription_error",
        Some(channel),
        &json!({"type": "AuthError", "error": error, "status": status}),
    )
}

/// Parses the `protocol` query parameter.
pub(crate) fn check_protocol(raw: Option<&str>) -> Result<u32, CloseCode> {
    let raw = raw.ok_or(CloseCode::NoProtocol)?;
    let version: u32 = raw.parse().map_err(|_| CloseCode::InvalidVersion)?;
    if (MIN_PROTOCOL..=MAX_PROTOCOL).contains(&version) {
        Ok(version)
    } else {
        Err(CloseCode::UnsupportedProtocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions() {
        assert_eq!(check_protocol(Some("7")), Ok(7));
        assert_eq!(check_protocol(Some("5")), Ok(5));
        assert_eq!(
            check_protocol(Some("4")),
            Err(CloseCode::UnsupportedProtocol)
        );
        assert_eq!(
            check_protocol(Some("8")),
            Err(CloseCode::UnsupportedProtocol)
        );
        assert_eq!(check_protocol(Some("x")), Err(CloseCode::InvalidVersion));
        assert_eq!(check_protocol(None), Err(CloseCode::NoProtocol));
    }

    #[test]
    fn frames_carry_data_as_a_string() {
        let f: Value = serde_json::from_str(&frame("e", Some("c"), &json!({"a": 1}))).unwrap();
        assert_eq!(
            f,
            json!({"event": "e", "channel": "c", "data": "{\"a\":1}"})
        );
        let f: Value = serde_json::from_str(&frame("e", None, &json!("raw"))).unwrap();
        assert_eq!(f, json!({"event": "e", "data": "raw"}));
    }
}
