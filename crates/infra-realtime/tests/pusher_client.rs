//! The Pusher client against a local server that verifies signatures as Pusher does.
#![cfg(feature = "pusher")]

mod support;

use infra_core::{
    BatchEvent, ChannelName, ErrorKind, EventName, HealthCheck, HealthStatus, Realtime,
};
use infra_realtime::{PusherClient, PusherConfig};
use serde_json::json;
use support::{KEY, SECRET, pusher_api};

fn ch(n: &str) -> ChannelName {
    ChannelName::new(n).unwrap()
}

#[tokio::test]
async fn trigger_and_batch_are_signed_and_shaped_as_the_api_expects() {
    let (base, log) = pusher_api().await;
    let client =
        PusherClient::new(PusherConfig::new(base, "3", "278d425bdf160c739803", SECRET)).unwrap();
    client
        .trigger(
            &[ch("private-user-1"), ch("team")],
            &EventName::new("meeting.moved").unwrap(),
            &json!({"id": 9}),
        )
        .await
        .unwrap();
    client
        .trigger_batch(&[BatchEvent {
            channel: ch("a"),
            name: EventName::new("e").unwrap(),
            data: json!("raw"),
        }])
        .await
        .unwrap();
    let received = log.lock().unwrap();
    assert!(received.iter().all(|r| r.verdict.is_ok()), "{received:?}");
    assert_eq!(received[0].path, "/apps/3/events");
    assert_eq!(
        received[0].body,
        json!({"name": "meeting.moved", "data": "{\"id\":9}", "channels": ["private-user-1", "team"]})
    );
    assert_eq!(
        received[1].body,
        json!({"batch": [{"channel": "a", "name": "e", "data": "raw"}]})
    );
}

#[tokio::test]
async fn wrong_secret_is_a_config_error_and_health_reports_it() {
    let (base, _) = pusher_api().await;
    let client = PusherClient::new(PusherConfig::new(
        base.clone(),
        "3",
        KEY,
        "wrong-secret-value",
    ))
    .unwrap();
    let err = client
        .trigger(&[ch("a")], &EventName::new("e").unwrap(), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(err.variable(), Some("PUSHER_SECRET"));
    assert!(!format!("{err:?}").contains("wrong-secret-value"));
    assert_eq!(client.check().await.status, HealthStatus::Unhealthy);

    let good = PusherClient::new(PusherConfig::new(base, "3", KEY, SECRET)).unwrap();
    let report = good.check().await;
    assert_eq!(report.status, HealthStatus::Healthy, "{}", report.detail);
    assert!(report.detail.contains("2 occupied"), "{}", report.detail);
}

#[tokio::test]
async fn limits_are_enforced_before_sending() {
    let (base, log) = pusher_api().await;
    let client = PusherClient::new(PusherConfig::new(base, "3", KEY, SECRET)).unwrap();
    let channels: Vec<_> = (0..101).map(|i| ch(&format!("c{i}"))).collect();
    let err = client
        .trigger(&channels, &EventName::new("e").unwrap(), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("channels"));
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn auth_endpoints_use_the_app_credentials() {
    let base = url::Url::parse("http://127.0.0.1:1").unwrap();
    let client =
        PusherClient::new(PusherConfig::new(base, "3", "278d425bdf160c739803", SECRET)).unwrap();
    let auth = client
        .authorize_channel("1234.1234", &ch("private-foobar"), None)
        .unwrap();
    assert!(
        auth.auth
            .ends_with(":58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4")
    );
    assert_eq!(
        client
            .authorize_channel("bad", &ch("private-x"), None)
            .unwrap_err()
            .field(),
        Some("socket_id")
    );
    let err = client
        .trigger(&[ch("a")], &EventName::new("e").unwrap(), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}
