//! A Pusher API (or a man in the middle, or a broken proxy) that asks for absurd waits:
//! `Retry-After` of `u64::MAX` seconds, or a date thousands of years ahead. The call ends
//! with a typed error within its deadline — never a panic, never a wait beyond the deadline.
#![cfg(feature = "pusher")]

mod support;

use std::time::Duration;

use infra_core::{ChannelName, ErrorKind, EventName, MAX_RETRY_AFTER, Realtime};
use infra_realtime::{PusherClient, PusherConfig};
use serde_json::json;
use support::{KEY, Reply, SECRET, pusher_api_scripted};

/// The longest wait a reply may ask for; longer asks are cut to it.
const LONGEST_ASK: Duration = MAX_RETRY_AFTER;

/// Asks for waits no client should honour: the largest u64, more digits than a u64 holds,
/// and the last date an HTTP-date can name.
const ABSURD: [&str; 3] = [
    "18446744073709551615",
    "99999999999999999999999",
    "Fri, 31 Dec 9999 23:59:59 GMT",
];

async fn trigger_against(reply: Reply) -> (infra_core::Result<()>, usize) {
    let (base, log) = pusher_api_scripted(vec![reply]).await;
    let client = PusherClient::new(
        PusherConfig::new(base, "3", KEY, SECRET).with_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let call = tokio::spawn(async move {
        client
            .trigger(
                &[ChannelName::new("a").unwrap()],
                &EventName::new("e").unwrap(),
                &json!({}),
            )
            .await
    });
    let outcome = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call keeps its own deadline")
        .expect("the call does not panic");
    let requests = log.lock().unwrap().len();
    (outcome, requests)
}

#[tokio::test]
async fn a_rate_limit_asking_for_forever_is_a_typed_error_at_once() {
    for ask in ABSURD {
        let (outcome, requests) = trigger_against(Reply::retry_after(429, ask)).await;
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{ask}: {err:?}");
        assert_eq!(err.retry_after(), Some(LONGEST_ASK), "{ask}: {err:?}");
        assert_eq!(
            requests, 1,
            "{ask}: a wait beyond the deadline is not waited"
        );
    }
}

#[tokio::test]
async fn an_outage_asking_for_forever_is_a_typed_error_at_once() {
    for ask in ABSURD {
        let (outcome, requests) = trigger_against(Reply::retry_after(503, ask)).await;
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{ask}: {err:?}");
        assert_eq!(err.retry_after(), Some(LONGEST_ASK), "{ask}: {err:?}");
        assert_eq!(requests, 1, "{ask}");
    }
}

#[tokio::test]
async fn a_date_past_or_garbage_asks_for_no_wait_beyond_the_backoff() {
    for ask in ["Sunday, 06-Nov-94 08:49:37 GMT", "soon", "-5", "1e9", ""] {
        let (outcome, requests) = trigger_against(Reply::retry_after(429, ask)).await;
        outcome.unwrap_or_else(|err| panic!("{ask}: the retry should have succeeded: {err:?}"));
        assert_eq!(requests, 2, "{ask}: retried after the backoff");
    }
}
