//! Every call of the Pusher client against the local stand-in: paths, queries and bodies as
//! Pusher's HTTP API documents them, typed replies, typed 4xx errors, retries of 5xx and
//! transport failures, 429's `Retry-After`, and encrypted triggers.
#![cfg(feature = "pusher")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use infra_core::{Backoff, BatchEvent, ChannelName, ErrorKind, EventName, Realtime, RetryPolicy};
use infra_realtime::encryption::MASTER_KEY_VARIABLE;
use infra_realtime::{
    ChannelAttribute, ChannelAttributes, ChannelsQuery, EncryptedPayload, EncryptionMasterKey,
    PusherClient, PusherConfig, SharedSecret, TriggerOptions,
};
use serde_json::json;
use support::{KEY, Reply, SECRET, pusher_api, pusher_api_scripted};

fn ch(n: &str) -> ChannelName {
    ChannelName::new(n).unwrap()
}

fn ev(n: &str) -> EventName {
    EventName::new(n).unwrap()
}

fn client(base: url::Url) -> PusherClient {
    let config = PusherConfig::new(base, "3", KEY, SECRET).with_retry(RetryPolicy::new(
        3,
        Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
    ));
    PusherClient::new(config).unwrap()
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn every_call_sends_the_documented_path_query_and_body() {
    let (base, log) = pusher_api().await;
    let c = client(base);

    let reply = c
        .trigger_with(
            &[ch("presence-a"), ch("b")],
            &ev("moved"),
            &json!({"id": 9}),
            &TriggerOptions::excluding("123.456").with_info(ChannelAttribute::UserCount),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.channels["presence-a"],
        ChannelAttributes {
            user_count: Some(2),
            subscription_count: Some(3)
        }
    );

    let listed = c
        .channels(
            &ChannelsQuery::with_prefix("presence-")
                .with_info(ChannelAttribute::UserCount)
                .with_info(ChannelAttribute::SubscriptionCount),
        )
        .await
        .unwrap();
    assert_eq!(
        listed.channels.keys().collect::<Vec<_>>(),
        ["b", "presence-a"]
    );

    let info = c
        .channel(
            &ch("presence-a"),
            &[
                ChannelAttribute::UserCount,
                ChannelAttribute::SubscriptionCount,
            ],
        )
        .await
        .unwrap();
    assert!(info.occupied);
    assert_eq!(
        (info.user_count, info.subscription_count),
        (Some(2), Some(3))
    );

    let users = c.presence_users(&ch("presence-a")).await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["1", "2"]
    );

    c.terminate_user_connections("user-42").await.unwrap();

    c.trigger_batch(&[BatchEvent {
        channel: ch("a"),
        name: ev("e"),
        data: json!({"n": 1}),
    }])
    .await
    .unwrap();

    let seen = log.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.verdict.is_ok()), "{seen:?}");
    let calls: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("POST", "/apps/3/events"),
            ("GET", "/apps/3/channels"),
            ("GET", "/apps/3/channels/presence-a"),
            ("GET", "/apps/3/channels/presence-a/users"),
            ("POST", "/apps/3/users/user-42/terminate_connections"),
            ("POST", "/apps/3/batch_events"),
        ]
    );
    assert_eq!(
        seen[0].body,
        json!({"name": "moved", "data": "{\"id\":9}", "channels": ["presence-a", "b"],
               "socket_id": "123.456", "info": "user_count"})
    );
    assert_eq!(
        seen[1].call_params(),
        params(&[
            ("filter_by_prefix", "presence-"),
            ("info", "user_count,subscription_count")
        ])
    );
    assert_eq!(
        seen[2].call_params(),
        params(&[("info", "user_count,subscription_count")])
    );
    assert!(seen[3].call_params().is_empty());
    assert_eq!(seen[4].body, json!({}));
    assert!(seen[4].query.contains_key("body_md5"));
    assert_eq!(
        seen[5].body,
        json!({"batch": [{"channel": "a", "name": "e", "data": "{\"n\":1}"}]})
    );
}

#[tokio::test]
async fn wrong_calls_are_refused_before_sending() {
    let (base, log) = pusher_api().await;
    let c = client(base);
    let field = |e: infra_core::Error| e.field().map(str::to_owned);
    assert_eq!(
        field(c.presence_users(&ch("private-a")).await.unwrap_err()).as_deref(),
        Some("channel")
    );
    assert_eq!(
        field(
            c.channel(&ch("private-a"), &[ChannelAttribute::UserCount])
                .await
                .unwrap_err()
        )
        .as_deref(),
        Some("info")
    );
    assert_eq!(
        field(
            c.channels(&ChannelsQuery::all().with_info(ChannelAttribute::UserCount))
                .await
                .unwrap_err()
        )
        .as_deref(),
        Some("info")
    );
    assert_eq!(
        field(c.terminate_user_connections("a/b").await.unwrap_err()).as_deref(),
        Some("user_id")
    );
    assert_eq!(
        field(
            c.trigger_with(
                &[ch("a")],
                &ev("e"),
                &json!({}),
                &TriggerOptions::excluding("nope")
            )
            .await
            .unwrap_err()
        )
        .as_deref(),
        Some("socket_id")
    );
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn client_errors_are_typed_with_the_servers_message_and_not_retried() {
    let (base, log) = pusher_api_scripted(vec![
        Reply::status(400, "Invalid channel name: too long\n"),
        Reply::status(404, "Unknown app"),
        Reply::status(413, "Payload too large"),
    ])
    .await;
    let c = client(base);
    let (channels, event, data) = ([ch("a")], ev("e"), json!({}));
    let trigger = || c.trigger(&channels, &event, &data);
    let bad = trigger().await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        bad.message(),
        "Pusher replied 400: Invalid channel name: too long"
    );
    assert_eq!(bad.context("status"), Some("400"));
    assert_eq!(trigger().await.unwrap_err().kind(), ErrorKind::NotFound);
    let large = trigger().await.unwrap_err();
    assert_eq!(large.kind(), ErrorKind::InvalidInput);
    assert!(large.message().contains("Payload too large"));
    assert_eq!(
        log.lock().unwrap().len(),
        3,
        "4xx is final: one request each"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_fail_and_a_later_success_wins() {
    let (base, log) = pusher_api_scripted(vec![
        Reply::status(503, "busy"),
        Reply::status(500, "oops"),
        Reply::status(502, "bad gateway"),
        Reply::status(500, "once more"),
    ])
    .await;
    let c = client(base);
    let err = c
        .trigger(&[ch("a")], &ev("e"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("502: bad gateway"), "{err}");
    assert_eq!(err.context("attempts"), Some("3"));
    assert_eq!(log.lock().unwrap().len(), 3);

    // One more 500, then the stand-in answers normally: the retry succeeds.
    c.trigger(&[ch("a")], &ev("e"), &json!({})).await.unwrap();
    let seen = log.lock().unwrap();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|s| s.verdict.is_ok()));
}

#[tokio::test]
async fn transport_failures_are_retried_within_the_deadline() {
    // Nothing listens on port 1: every attempt fails to connect.
    let c = client(url::Url::parse("http://127.0.0.1:1").unwrap());
    let err = c
        .trigger(&[ch("a")], &ev("e"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(err.context("attempts"), Some("3"));
}

#[tokio::test]
async fn rate_limits_are_honoured_and_each_attempt_is_signed_afresh() {
    let (base, log) = pusher_api_scripted(vec![Reply::rate_limited(1)]).await;
    let c = client(base);
    c.trigger(&[ch("a")], &ev("e"), &json!({})).await.unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.verdict.is_ok()), "{seen:?}");
    // The retry waited out Retry-After (1 s), so it carries a later timestamp and its own
    // signature.
    let stamp = |s: &support::Seen| s.query["auth_timestamp"].parse::<u64>().unwrap();
    assert!(stamp(&seen[1]) > stamp(&seen[0]), "{seen:?}");
    assert_ne!(
        seen[0].query["auth_signature"],
        seen[1].query["auth_signature"]
    );

    // A Retry-After beyond the call's deadline ends the call at once, saying when to retry.
    let (base, log) = pusher_api_scripted(vec![Reply::rate_limited(30)]).await;
    let c = PusherClient::new(
        PusherConfig::new(base, "3", KEY, SECRET).with_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let err = c
        .trigger(&[ch("a")], &ev("e"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn encrypted_trigger_opens_with_the_secret_the_auth_reply_hands_out() {
    let (base, log) = pusher_api().await;
    let master = EncryptionMasterKey::from_bytes(*b"This is a string that is 32 chrs");
    let c = PusherClient::new(
        PusherConfig::new(base.clone(), "3", KEY, SECRET).with_encryption_master_key(master),
    )
    .unwrap();
    let channel = ch("private-encrypted-calendar-7");
    c.trigger(
        std::slice::from_ref(&channel),
        &ev("meeting.moved"),
        &json!({"id": 9}),
    )
    .await
    .unwrap();
    c.trigger_batch(&[BatchEvent {
        channel: channel.clone(),
        name: ev("e"),
        data: json!("raw"),
    }])
    .await
    .unwrap();

    let auth = c.authorize_channel("1234.1234", &channel, None).unwrap();
    let secret = SharedSecret::from_base64(auth.shared_secret.as_deref().unwrap()).unwrap();
    let seen = log.lock().unwrap().clone();
    let sealed: EncryptedPayload =
        serde_json::from_str(seen[0].body["data"].as_str().unwrap()).unwrap();
    assert_eq!(secret.decrypt(&sealed).unwrap(), br#"{"id":9}"#);
    let sealed: EncryptedPayload =
        serde_json::from_str(seen[1].body["batch"][0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(secret.decrypt(&sealed).unwrap(), b"raw");

    let mixed = c
        .trigger(&[channel, ch("b")], &ev("e"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(mixed.field(), Some("channels"));

    let without_key = client(base);
    let err = without_key
        .trigger(&[ch("private-encrypted-x")], &ev("e"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.variable(), Some(MASTER_KEY_VARIABLE));
    assert_eq!(
        log.lock().unwrap().len(),
        2,
        "refused triggers send nothing"
    );
}
