//! Property test: whatever text frame a client sends — garbage, JSON of any shape, protocol
//! events with hostile channel names, auth strings and channel data — the server answers with
//! the protocol (a reply, `pusher:subscription_error`, or `pusher:error` then a close code in
//! 4000–4399), never a dropped connection from a panic, and keeps serving everyone else.
#![cfg(feature = "server")]

mod server_support;

use futures_util::{SinkExt, StreamExt};
use infra_core::{ChannelName, EventName, Realtime};
use infra_realtime::server::RealtimeServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use server_support::*;
use tokio_tungstenite::tungstenite::Message;

/// JSON values of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Channel names a hostile client would try: every prefix, reserved characters, long names.
fn channel_name() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just(""),
        Just("private-"),
        Just("presence-"),
        Just("private-encrypted-"),
        Just("cache-"),
        Just("presence-cache-"),
        Just("#server-to-user-"),
        Just("#"),
    ];
    let rest = prop_oneof!["[A-Za-z0-9_=@,.;-]{0,40}", ".{0,40}", "[a-z]{190,260}",];
    (prefix, rest).prop_map(|(p, r)| format!("{p}{r}"))
}

/// Auth strings: well-formed but wrong, malformed, empty, huge, non-hex.
fn auth_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        "[0-9a-f]{0,80}:[0-9a-f]{0,80}".prop_map(Value::String),
        ".{0,100}".prop_map(Value::String),
        Just(json!(format!("{KEY}:{}", "ab".repeat(32)))),
        Just(json!(format!("{KEY}:"))),
        Just(json!(":::")),
        json_value(),
    ]
}

/// Protocol frames with hostile contents.
fn protocol_frame() -> impl Strategy<Value = String> {
    let event = prop_oneof![
        Just("pusher:subscribe".to_owned()),
        Just("pusher:unsubscribe".to_owned()),
        Just("pusher:signin".to_owned()),
        Just("pusher:ping".to_owned()),
        Just("pusher:pong".to_owned()),
        Just("client-x".to_owned()),
        ".{0,30}",
    ];
    let subscribe_data = (
        channel_name(),
        auth_string(),
        prop_oneof![Just(Value::Null), ".{0,80}".prop_map(Value::String), json_value()],
    )
        .prop_map(|(channel, auth, channel_data)| {
            json!({"channel": channel, "auth": auth, "channel_data": channel_data})
        })
        .boxed();
    let data = prop_oneof![
        subscribe_data.clone(),
        subscribe_data.prop_map(|d| Value::String(d.to_string())),
        json_value(),
        Just(json!({"auth": "x:y", "user_data": "{\"id\":\"1\"}"})),
        (auth_string(), ".{0,60}")
            .prop_map(|(auth, user_data)| json!({"auth": auth, "user_data": user_data})),
    ];
    (event, proptest::option::of(channel_name()), data).prop_map(|(event, channel, data)| {
        let mut frame = json!({"event": event, "data": data});
        if let Some(channel) = channel {
            frame["channel"] = json!(channel);
        }
        frame.to_string()
    })
}

fn any_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => protocol_frame(),
        1 => ".{0,200}",
        1 => json_value().prop_map(|v| v.to_string()),
    ]
}

/// Sends one frame on a fresh connection, then a ping: the connection must answer the ping or
/// close with a protocol code after saying why.
async fn check_frame(addr: std::net::SocketAddr, frame: String) -> Result<(), TestCaseError> {
    let mut client = Client::connect(addr).await;
    client
        .ws
        .send(Message::text(frame.clone()))
        .await
        .map_err(|e| TestCaseError::fail(format!("send: {e}")))?;
    let _ = client
        .ws
        .send(Message::text(r#"{"event":"pusher:ping","data":{}}"#))
        .await;
    let mut errors = 0;
    loop {
        let message = tokio::time::timeout(PATIENCE, client.ws.next())
            .await
            .map_err(|_| TestCaseError::fail(format!("no answer to {frame}")))?;
        match message {
            Some(Ok(Message::Text(text))) => {
                let answer: Value = serde_json::from_str(&text)
                    .map_err(|_| TestCaseError::fail(format!("not JSON: {text}")))?;
                match answer["event"].as_str() {
                    Some("pusher:pong") => return Ok(()),
                    Some("pusher:error") => errors += 1,
                    _ => {}
                }
            }
            Some(Ok(Message::Close(Some(close)))) => {
                let code = u16::from(close.code);
                prop_assert!(
                    (4000..4400).contains(&code),
                    "closed with {code} after {frame}"
                );
                prop_assert!(errors > 0, "closed without pusher:error after {frame}");
                return Ok(());
            }
            Some(Ok(_)) => {}
            other => {
                return Err(TestCaseError::fail(format!(
                    "connection dropped without a close frame after {frame}: {other:?}"
                )));
            }
        }
    }
}

#[test]
fn any_frame_gets_a_protocol_answer_and_the_server_keeps_serving() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, addr): (RealtimeServer, _) = runtime.block_on(start_default());
    let mut bystander = runtime.block_on(async {
        let mut c = Client::connect(addr).await;
        c.subscribe("bystander").await;
        c
    });
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&any_frame(), |frame| {
            runtime.block_on(check_frame(addr, frame))
        })
        .unwrap();
    runtime.block_on(async {
        server
            .trigger(
                &[ChannelName::new("bystander").unwrap()],
                &EventName::new("still-here").unwrap(),
                &json!({}),
            )
            .await
            .unwrap();
        bystander.recv_event("still-here", None).await;
        eventually("every probe connection is gone", || {
            server.connection_count() == 1
        })
        .await;
    });
}
