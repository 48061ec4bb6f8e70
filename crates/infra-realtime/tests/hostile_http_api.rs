//! The HTTP API as SDKs in the wild call it: the PyPI `pusher` SDK (3.3.4) posts
//! `terminate_connections` to `/users/{id}/terminate_connections`, without `/apps/{app_id}`.
//! That path is accepted too, with the same signature check over the path as sent; the app
//! is the one whose key signed it.
#![cfg(feature = "server")]

mod server_support;

use std::time::{SystemTime, UNIX_EPOCH};

use infra_realtime::signature;
use serde_json::json;
use server_support::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn post(addr: std::net::SocketAddr, path: &str, params: &[(String, String)]) -> u16 {
    let url =
        reqwest::Url::parse_with_params(&format!("http://{addr}{path}"), params.iter()).unwrap();
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn signed(path: &str, key: &str, secret: &str) -> Vec<(String, String)> {
    let secret = infra_core::Secret::new(secret.to_owned());
    signature::sign_request(key, &secret, "POST", path, Some(b"{}"), now(), &[])
        .into_iter()
        .collect()
}

async fn signed_in(addr: std::net::SocketAddr, id: &str) -> Client {
    let mut client = Client::connect(addr).await;
    let user_data = json!({"id": id}).to_string();
    let auth = signature::authenticate_user(KEY, &secret(), &client.socket_id, &user_data).unwrap();
    client
        .send(
            json!({"event": "pusher:signin", "data": {"auth": auth.auth, "user_data": user_data}}),
        )
        .await;
    client.recv_event("pusher:signin_success", None).await;
    client
}

#[tokio::test]
async fn terminate_connections_without_the_apps_prefix_is_accepted_when_signed() {
    let (_server, addr) = start_default().await;
    let mut u2 = signed_in(addr, "u2").await;
    let mut bystander = signed_in(addr, "u3").await;
    let path = "/users/u2/terminate_connections";

    // Unsigned, signed over another path, or by an unknown key: refused, nobody closed.
    assert_eq!(post(addr, path, &[]).await, 401);
    let other_path = signed("/users/u3/terminate_connections", KEY, SECRET);
    assert_eq!(post(addr, path, &other_path).await, 401);
    assert_eq!(
        post(addr, path, &signed(path, KEY, "not-the-secret")).await,
        401
    );
    assert_eq!(
        post(addr, path, &signed(path, "unknown-key", SECRET)).await,
        401
    );
    u2.assert_quiet(std::time::Duration::from_millis(200)).await;

    // Signed over the path as sent: u2's connections close with 4009, nobody else's.
    assert_eq!(post(addr, path, &signed(path, KEY, SECRET)).await, 200);
    assert_eq!(u2.closed().await.0, 4009);
    bystander
        .assert_quiet(std::time::Duration::from_millis(200))
        .await;

    // The prefixed path keeps working.
    let prefixed = format!("/apps/{APP_ID}/users/u3/terminate_connections");
    assert_eq!(
        post(addr, &prefixed, &signed(&prefixed, KEY, SECRET)).await,
        200
    );
    assert_eq!(bystander.closed().await.0, 4009);
}
