//! What a client sends, parsed from untrusted text into typed messages. Every input gets a
//! message or a typed error, never a panic; the connection decides what each costs (a reply,
//! a refusal, a close code).

use std::fmt;

use serde_json::Value;

use super::protocol::ClientFrame;

/// A protocol message from a client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ClientMessage {
    Ping,
    Pong,
    Subscribe(SubscribeRequest),
    Unsubscribe {
        channel: String,
    },
    SignIn(SignInRequest),
    ClientEvent(ClientEvent),
    /// A protocol event missing what it needs; answered with `pusher:error`, the connection
    /// stays.
    Incomplete(&'static str),
    /// Events the protocol does not know are ignored, as Pusher does.
    Unknown,
}

/// `pusher:subscribe`: the channel, and for private and presence channels the proof.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubscribeRequest {
    pub channel: String,
    /// `key:signature`, as the app's auth endpoint signed it.
    pub auth: Option<String>,
    /// The presence identity, exactly as signed (a JSON string).
    pub channel_data: Option<String>,
}

/// `pusher:signin`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SignInRequest {
    pub auth: Option<String>,
    pub user_data: Option<String>,
}

/// A `client-` event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientEvent {
    pub event: String,
    pub channel: Option<String>,
    pub data: Value,
}

/// Why a frame is not a protocol message; the connection closes with 4300 after saying so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Longer than the app's payload limit plus the frame's own overhead.
    TooLarge { bytes: usize, limit: usize },
    /// Not JSON, or JSON without an `event` string.
    NotAMessage(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { bytes, limit } => {
                write!(f, "frame of {bytes} bytes; the limit is {limit}")
            }
            FrameError::NotAMessage(why) => write!(f, "frame is not a protocol message: {why}"),
        }
    }
}

impl ClientMessage {
    /// Parses one text frame of at most `limit` bytes.
    pub fn parse(text: &str, limit: usize) -> Result<ClientMessage, FrameError> {
        if text.len() > limit {
            return Err(FrameError::TooLarge {
                bytes: text.len(),
                limit,
            });
        }
        let frame: ClientFrame =
            serde_json::from_str(text).map_err(|e| FrameError::NotAMessage(e.to_string()))?;
        Ok(match frame.event.as_str() {
            "pusher:ping" => ClientMessage::Ping,
            "pusher:pong" => ClientMessage::Pong,
            "pusher:subscribe" => {
                let data = frame.data_object();
                match string_field(&data, "channel") {
                    Some(channel) => ClientMessage::Subscribe(SubscribeRequest {
                        channel,
                        auth: string_field(&data, "auth"),
                        channel_data: string_field(&data, "channel_data"),
                    }),
                    None => ClientMessage::Incomplete("pusher:subscribe needs a `channel`"),
                }
            }
            "pusher:unsubscribe" => match string_field(&frame.data_object(), "channel") {
                Some(channel) => ClientMessage::Unsubscribe { channel },
                // Nothing to leave; Pusher ignores it too.
                None => ClientMessage::Unknown,
            },
            "pusher:signin" => {
                let data = frame.data_object();
                ClientMessage::SignIn(SignInRequest {
                    auth: string_field(&data, "auth"),
                    user_data: string_field(&data, "user_data"),
                })
            }
            event if event.starts_with("client-") => ClientMessage::ClientEvent(ClientEvent {
                event: frame.event.clone(),
                channel: frame.channel,
                data: frame.data,
            }),
            _ => ClientMessage::Unknown,
        })
    }
}

fn string_field(data: &Value, field: &str) -> Option<String> {
    data.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// Why an `auth` string is not `key:signature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    Missing,
    Malformed,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "`auth` is missing",
            AuthError::Malformed => "`auth` must be `key:signature`",
        })
    }
}

/// Splits `key:signature` (the signature is checked by the caller, in constant time).
pub(crate) fn split_auth(auth: Option<&str>) -> Result<(&str, &str), AuthError> {
    let auth = auth.filter(|a| !a.is_empty()).ok_or(AuthError::Missing)?;
    match auth.split_once(':') {
        Some((key, signature)) if !key.is_empty() && !signature.is_empty() => Ok((key, signature)),
        _ => Err(AuthError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const LIMIT: usize = 14 * 1024;

    #[test]
    fn protocol_events() {
        let parse = |v: Value| ClientMessage::parse(&v.to_string(), LIMIT).unwrap();
        assert_eq!(
            parse(json!({"event": "pusher:ping", "data": {}})),
            ClientMessage::Ping
        );
        assert_eq!(
            parse(json!({"event": "pusher:subscribe", "data": {"channel": "a", "auth": "k:s"}})),
            ClientMessage::Subscribe(SubscribeRequest {
                channel: "a".into(),
                auth: Some("k:s".into()),
                channel_data: None,
            })
        );
        // Some clients send `data` as a JSON-encoded string.
        assert_eq!(
            parse(json!({"event": "pusher:subscribe", "data": "{\"channel\":\"b\"}"})),
            ClientMessage::Subscribe(SubscribeRequest {
                channel: "b".into(),
                auth: None,
                channel_data: None,
            })
        );
        assert_eq!(
            parse(json!({"event": "pusher:subscribe", "data": {"channel": 7}})),
            ClientMessage::Incomplete("pusher:subscribe needs a `channel`")
        );
        assert_eq!(
            parse(json!({"event": "pusher:unsubscribe", "data": {}})),
            ClientMessage::Unknown
        );
        assert_eq!(parse(json!({"event": "whatever"})), ClientMessage::Unknown);
        assert!(matches!(
            parse(json!({"event": "client-x", "channel": "private-a", "data": 1})),
            ClientMessage::ClientEvent(_)
        ));
        assert_eq!(
            ClientMessage::parse("x".repeat(20).as_str(), 10),
            Err(FrameError::TooLarge {
                bytes: 20,
                limit: 10
            })
        );
        assert!(matches!(
            ClientMessage::parse("{\"data\":1}", LIMIT),
            Err(FrameError::NotAMessage(_))
        ));
    }

    #[test]
    fn auth_strings() {
        assert_eq!(split_auth(Some("k:abc")), Ok(("k", "abc")));
        assert_eq!(split_auth(Some("k:a:b")), Ok(("k", "a:b")));
        assert_eq!(split_auth(None), Err(AuthError::Missing));
        assert_eq!(split_auth(Some("")), Err(AuthError::Missing));
        for bad in ["k", ":s", "k:", ":"] {
            assert_eq!(split_auth(Some(bad)), Err(AuthError::Malformed), "{bad}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("event".to_owned()),
                        Just("channel".to_owned()),
                        Just("data".to_owned()),
                        Just("auth".to_owned()),
                        Just("channel_data".to_owned()),
                        Just("user_data".to_owned()),
                        ".{0,8}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_text_is_a_message_or_a_typed_error(text in ".{0,300}", limit in 0usize..400) {
            match ClientMessage::parse(&text, limit) {
                Ok(_) => prop_assert!(text.len() <= limit),
                Err(FrameError::TooLarge { bytes, limit: l }) => {
                    prop_assert_eq!(bytes, text.len());
                    prop_assert!(bytes > l);
                }
                Err(FrameError::NotAMessage(why)) => prop_assert!(!why.is_empty()),
            }
        }

        #[test]
        fn any_json_frame_is_a_message_or_a_typed_error(
            event in prop_oneof![
                Just("pusher:subscribe".to_owned()),
                Just("pusher:unsubscribe".to_owned()),
                Just("pusher:signin".to_owned()),
                Just("client-x".to_owned()),
                ".{0,20}",
            ],
            data in json_value(),
            as_string in any::<bool>(),
            channel in proptest::option::of(json_value()),
        ) {
            let data = if as_string { Value::String(data.to_string()) } else { data };
            let mut frame = json!({"event": event, "data": data});
            if let Some(channel) = channel {
                frame["channel"] = channel;
            }
            let text = frame.to_string();
            let parsed = ClientMessage::parse(&text, usize::MAX);
            // A frame with a string `channel` parses; any other `channel` is a typed error.
            match (&frame["channel"], parsed) {
                (Value::Null | Value::String(_), Ok(_)) => {}
                (_, Err(FrameError::NotAMessage(_))) => {}
                (channel, other) => prop_assert!(false, "{channel}: {other:?}"),
            }
        }

        #[test]
        fn any_auth_string_splits_or_is_a_typed_error(auth in proptest::option::of(".{0,80}")) {
            match split_auth(auth.as_deref()) {
                Ok((key, signature)) => {
                    prop_assert!(!key.is_empty() && !signature.is_empty());
                    prop_assert_eq!(format!("{key}:{signature}"), auth.unwrap());
                }
                Err(AuthError::Missing) => prop_assert!(auth.is_none_or(|a| a.is_empty())),
                Err(AuthError::Malformed) => {}
            }
        }
    }
}
