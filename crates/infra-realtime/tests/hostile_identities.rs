//! Hostile clients claiming identities nobody signed: a presence identity smuggled into a
//! private subscription, and a second sign-in that would keep the first user's channel.
#![cfg(feature = "server")]

mod server_support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infra_core::ChannelName;
use infra_realtime::signature;
use serde_json::json;
use server_support::*;

fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

#[tokio::test]
async fn channel_data_on_a_private_channel_creates_no_presence_identity() {
    let (server, addr) = start_default().await;
    let mut intruder = Client::connect(addr).await;
    // A valid private authorization, signed over `socket_id:channel` only …
    let auth =
        signature::authorize_channel(KEY, &secret(), &intruder.socket_id, &ch("private-x"), None)
            .unwrap();
    // … with an identity nobody signed riding along.
    let forged = r#"{"user_id":"admin","user_info":{"role":"root"}}"#;
    let answer = intruder
        .subscribe_with(json!({"channel": "private-x", "auth": auth.auth, "channel_data": forged}))
        .await;
    assert_eq!(answer["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        data_of(&answer),
        json!({}),
        "a private channel has no presence"
    );
    assert_eq!(server.state_counts().members, 0);

    // Client events on the channel carry no user id either.
    let mut peer = Client::connect(addr).await;
    peer.subscribe_private("private-x").await;
    intruder
        .send(json!({"event": "client-hi", "channel": "private-x", "data": {}}))
        .await;
    let relayed = peer.recv_event("client-hi", Some("private-x")).await;
    assert!(relayed.get("user_id").is_none(), "{relayed}");

    // A presence channel with a private-style signature (not over the channel data) fails.
    let over_channel_only = signature::hmac_hex(
        &secret(),
        format!("{}:presence-x", intruder.socket_id).as_bytes(),
    );
    let private_style = format!("{KEY}:{over_channel_only}");
    let refused = intruder
        .subscribe_with(
            json!({"channel": "presence-x", "auth": private_style, "channel_data": forged}),
        )
        .await;
    assert_eq!(refused["event"], "pusher:subscription_error");
    assert_eq!(data_of(&refused)["status"], 401);
    assert_eq!(server.state_counts().members, 0);
}

/// A signed HTTP API POST; returns the status.
async fn signed_post(addr: std::net::SocketAddr, path: &str, body: &str) -> u16 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let params = signature::sign_request(
        KEY,
        &secret(),
        "POST",
        path,
        Some(body.as_bytes()),
        now,
        &[],
    );
    let url =
        reqwest::Url::parse_with_params(&format!("http://{addr}{path}"), params.iter()).unwrap();
    let reply = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    reply.status().as_u16()
}

async fn sign_in(client: &mut Client, id: &str) {
    let user_data = json!({"id": id}).to_string();
    let auth = signature::authenticate_user(KEY, &secret(), &client.socket_id, &user_data).unwrap();
    client
        .send(
            json!({"event": "pusher:signin", "data": {"auth": auth.auth, "user_data": user_data}}),
        )
        .await;
    client.recv_event("pusher:signin_success", None).await;
}

#[tokio::test]
async fn a_second_sign_in_leaves_the_first_user_s_channel() {
    let (server, addr) = start_default().await;
    let mut socket = Client::connect(addr).await;
    sign_in(&mut socket, "x").await;
    assert_eq!(
        socket.subscribe("#server-to-user-x").await["event"],
        "pusher_internal:subscription_succeeded"
    );
    sign_in(&mut socket, "y").await;
    // The socket is y now: x's channel and x's events are not its any more.
    eventually("x's channel left", || {
        !server.channels().contains(&"#server-to-user-x".to_owned())
    })
    .await;
    let for_x = json!({"name": "for-x", "data": "{}", "channel": "#server-to-user-x"});
    let events = format!("/apps/{APP_ID}/events");
    assert_eq!(signed_post(addr, &events, &for_x.to_string()).await, 200);
    socket.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(server.state_counts().users, 1);

    // Terminating x leaves the socket (it is y); terminating y closes it.
    let terminate = |user: &str| format!("/apps/{APP_ID}/users/{user}/terminate_connections");
    assert_eq!(signed_post(addr, &terminate("x"), "{}").await, 200);
    socket.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(signed_post(addr, &terminate("y"), "{}").await, 200);
    assert_eq!(socket.closed().await.0, 4009);
}
