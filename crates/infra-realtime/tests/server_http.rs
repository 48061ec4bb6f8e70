//! The embedded server's HTTP API: signatures, limits, status codes, channel queries.
#![cfg(all(feature = "server", feature = "pusher"))]

mod server_support;

use std::time::{SystemTime, UNIX_EPOCH};

use infra_core::{HealthCheck, HealthStatus};
use infra_realtime::signature;
use infra_realtime::{PusherClient, PusherConfig};
use serde_json::{Value, json};
use server_support::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends a signed call; returns status and body.
async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    query: &[(&str, &str)],
    timestamp: u64,
) -> (u16, String) {
    let params = signature::sign_request(
        KEY,
        &secret(),
        method,
        path,
        body.map(str::as_bytes),
        timestamp,
        query,
    );
    send(addr, method, path, body, &params).await
}

async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    params: &std::collections::BTreeMap<String, String>,
) -> (u16, String) {
    let url =
        reqwest::Url::parse_with_params(&format!("http://{addr}{path}"), params.iter()).unwrap();
    let mut request = reqwest::Client::new().request(method.parse().unwrap(), url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let reply = request.send().await.unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

#[tokio::test]
async fn trigger_reaches_subscribers_except_the_named_socket() {
    let (_server, addr) = start_default().await;
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe("news").await;
    b.subscribe("news").await;
    let body = json!({"name": "flash", "data": "{\"n\":1}", "channels": ["news"], "socket_id": a.socket_id}).to_string();
    let (status, reply) = call(addr, "POST", "/apps/3/events", Some(&body), &[], now()).await;
    assert_eq!((status, reply.as_str()), (200, "{}"));
    assert_eq!(
        b.recv_event("flash", Some("news")).await["data"],
        "{\"n\":1}"
    );
    a.assert_quiet(std::time::Duration::from_millis(200)).await;

    let body = json!({"name": "e", "data": "{}", "channel": "news", "info": "subscription_count"})
        .to_string();
    let (status, reply) = call(addr, "POST", "/apps/3/events", Some(&body), &[], now()).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"channels": {"news": {"subscription_count": 2}}})
    );
}

#[tokio::test]
async fn status_codes_follow_the_spec() {
    let (_server, addr) = start_default().await;
    let good = json!({"name": "e", "data": "{}", "channels": ["a"]}).to_string();
    // 401: wrong secret, stale timestamp, tampered body, no signature.
    let params = signature::sign_request(
        KEY,
        &infra_core::Secret::new("wrong".to_owned()),
        "POST",
        "/apps/3/events",
        Some(good.as_bytes()),
        now(),
        &[],
    );
    assert_eq!(
        send(addr, "POST", "/apps/3/events", Some(&good), &params)
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            addr,
            "POST",
            "/apps/3/events",
            Some(&good),
            &[],
            now() - 700
        )
        .await
        .0,
        401
    );
    let params = signature::sign_request(
        KEY,
        &secret(),
        "POST",
        "/apps/3/events",
        Some(good.as_bytes()),
        now(),
        &[],
    );
    let tampered = good.replace("\"a\"", "\"b\"");
    let (status, reply) = send(addr, "POST", "/apps/3/events", Some(&tampered), &params).await;
    assert_eq!(status, 401);
    assert!(reply.contains("body_md5"), "{reply}");
    assert_eq!(
        send(addr, "GET", "/apps/3/channels", None, &Default::default())
            .await
            .0,
        401
    );
    // 404: unknown app.
    assert_eq!(
        call(addr, "POST", "/apps/9/events", Some(&good), &[], now())
            .await
            .0,
        404
    );
    // 400: bad JSON, bad channel, bad event name, too many channels, bad socket id, big batch.
    for body in [
        "{not json".to_owned(),
        json!({"name": "e", "data": "{}", "channels": ["bad channel"]}).to_string(),
        json!({"name": "pusher:x", "data": "{}", "channels": ["a"]}).to_string(),
        json!({"name": "e", "data": "{}", "channels": (0..101).map(|i| format!("c{i}")).collect::<Vec<_>>()}).to_string(),
        json!({"name": "e", "data": "{}", "channels": ["a"], "socket_id": "nope"}).to_string(),
        json!({"name": "e", "data": "{}", "channels": ["private-encrypted-a", "b"]}).to_string(),
    ] {
        let (status, reply) = call(addr, "POST", "/apps/3/events", Some(&body), &[], now()).await;
        assert_eq!(status, 400, "{body}: {reply}");
    }
    let batch = json!({"batch": (0..11).map(|_| json!({"name": "e", "data": "{}", "channel": "a"})).collect::<Vec<_>>()}).to_string();
    assert_eq!(
        call(
            addr,
            "POST",
            "/apps/3/batch_events",
            Some(&batch),
            &[],
            now()
        )
        .await
        .0,
        400
    );
    // 413: data over the app's limit.
    let big = json!({"name": "e", "data": "x".repeat(11 * 1024), "channels": ["a"]}).to_string();
    assert_eq!(
        call(addr, "POST", "/apps/3/events", Some(&big), &[], now())
            .await
            .0,
        413
    );
}

#[tokio::test]
async fn channel_queries_and_users() {
    let (_server, addr) = start_default().await;
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe("news").await;
    a.subscribe_presence("presence-room", "alice").await;
    b.subscribe_presence("presence-room", "bob").await;

    let (status, reply) = call(addr, "GET", "/apps/3/channels", None, &[], now()).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"channels": {"news": {}, "presence-room": {}}})
    );
    let (_, reply) = call(
        addr,
        "GET",
        "/apps/3/channels",
        None,
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        now(),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"channels": {"presence-room": {"user_count": 2}}})
    );
    assert_eq!(
        call(
            addr,
            "GET",
            "/apps/3/channels",
            None,
            &[("info", "user_count")],
            now()
        )
        .await
        .0,
        400
    );

    let (_, reply) = call(
        addr,
        "GET",
        "/apps/3/channels/presence-room",
        None,
        &[("info", "user_count,subscription_count")],
        now(),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"occupied": true, "user_count": 2, "subscription_count": 2})
    );
    let (_, reply) = call(addr, "GET", "/apps/3/channels/empty", None, &[], now()).await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"occupied": false})
    );

    let (_, reply) = call(
        addr,
        "GET",
        "/apps/3/channels/presence-room/users",
        None,
        &[],
        now(),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"users": [{"id": "alice"}, {"id": "bob"}]})
    );
    assert_eq!(
        call(addr, "GET", "/apps/3/channels/news/users", None, &[], now())
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn pusher_client_health_check_reads_the_server() {
    let (_server, addr) = start_default().await;
    let mut a = Client::connect(addr).await;
    a.subscribe("news").await;
    let base = url::Url::parse(&format!("http://{addr}")).unwrap();
    let client = PusherClient::new(PusherConfig::new(base.clone(), APP_ID, KEY, SECRET)).unwrap();
    let report = client.check().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert!(report.detail.contains("1 occupied"), "{}", report.detail);
    let wrong = PusherClient::new(PusherConfig::new(base, APP_ID, KEY, "not-the-secret")).unwrap();
    assert_eq!(wrong.check().await.status, HealthStatus::Unhealthy);
}
