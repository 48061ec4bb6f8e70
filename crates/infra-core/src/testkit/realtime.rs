//! The `Realtime` conformance suite: what is triggered reaches a real subscriber, in order.
//!
//! A backend's test provides a [`Subscriber`] that receives the way a browser would (for the
//! Pusher protocol: a WebSocket client), then calls [`run_all`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::{BatchEvent, ChannelName, ErrorKind, EventName, Realtime};

/// How long a case waits for an event that must arrive (only to avoid hangs).
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a case waits to be sure nothing arrives.
const QUIET: Duration = Duration::from_millis(300);

/// One event as a subscriber received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The channel.
    pub channel: String,
    /// The event name.
    pub event: String,
    /// The data as carried on the wire: a JSON-encoded string.
    pub data: String,
}

/// Receives one channel's events.
#[async_trait]
pub trait Inbox: Send {
    /// The next event, or `None` when none arrives `within`.
    async fn next(&mut self, within: Duration) -> Option<Received>;
}

/// Subscribes to channels the way the backend's clients do.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Subscribes to `channel` (authorizing private ones) and returns once confirmed.
    async fn subscribe(&self, channel: &ChannelName) -> Box<dyn Inbox>;
}

/// A channel name no other test is using: `testkit-{case}-{pid}-{nanos}-{n}`.
pub fn unique_channel(case: &str) -> ChannelName {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    ChannelName::new(format!(
        "{case}-testkit-{}-{nanos:x}-{n}",
        std::process::id()
    ))
    .expect("a valid channel name")
}

fn event(name: &str) -> EventName {
    EventName::new(name).expect("a valid event name")
}

async fn expect(inbox: &mut dyn Inbox, what: &str) -> Received {
    inbox
        .next(PATIENCE)
        .await
        .unwrap_or_else(|| panic!("{what} did not arrive"))
}

/// Runs every case in order.
pub async fn run_all(realtime: Arc<dyn Realtime>, subscriber: Arc<dyn Subscriber>) {
    events_arrive_in_order(realtime.as_ref(), subscriber.as_ref()).await;
    one_trigger_reaches_every_channel(realtime.as_ref(), subscriber.as_ref()).await;
    batches_arrive_in_order(realtime.as_ref(), subscriber.as_ref()).await;
    invalid_triggers_are_refused_and_deliver_nothing(realtime.as_ref(), subscriber.as_ref()).await;
    encrypted_payloads_never_travel_in_clear(realtime.as_ref(), subscriber.as_ref()).await;
}

/// Twenty events on one channel arrive in order with their data JSON-encoded.
pub async fn events_arrive_in_order(realtime: &dyn Realtime, subscriber: &dyn Subscriber) {
    let channel = unique_channel("order");
    let mut inbox = subscriber.subscribe(&channel).await;
    for n in 0..20 {
        realtime
            .trigger(
                std::slice::from_ref(&channel),
                &event("tick"),
                &json!({"n": n}),
            )
            .await
            .expect("trigger");
    }
    for n in 0..20 {
        let got = expect(inbox.as_mut(), "an ordered event").await;
        assert_eq!(
            (got.channel.as_str(), got.event.as_str()),
            (channel.as_str(), "tick")
        );
        let data: Value = serde_json::from_str(&got.data).expect("data is JSON");
        assert_eq!(
            data,
            json!({"n": n}),
            "events arrive in the order triggered"
        );
    }
    // A string payload travels as it is.
    realtime
        .trigger(
            std::slice::from_ref(&channel),
            &event("text"),
            &json!("plain words"),
        )
        .await
        .expect("trigger");
    assert_eq!(
        expect(inbox.as_mut(), "a string payload").await.data,
        "plain words"
    );
}

/// One trigger naming two channels reaches the subscribers of both.
pub async fn one_trigger_reaches_every_channel(
    realtime: &dyn Realtime,
    subscriber: &dyn Subscriber,
) {
    let a = unique_channel("multi-a");
    let b = unique_channel("multi-b");
    let mut inbox_a = subscriber.subscribe(&a).await;
    let mut inbox_b = subscriber.subscribe(&b).await;
    realtime
        .trigger(&[a.clone(), b.clone()], &event("both"), &json!({"x": 1}))
        .await
        .expect("trigger");
    assert_eq!(
        expect(inbox_a.as_mut(), "event on a").await.channel,
        a.as_str()
    );
    assert_eq!(
        expect(inbox_b.as_mut(), "event on b").await.channel,
        b.as_str()
    );
}

/// A batch's events arrive on their channels in batch order.
pub async fn batches_arrive_in_order(realtime: &dyn Realtime, subscriber: &dyn Subscriber) {
    let a = unique_channel("batch-a");
    let b = unique_channel("batch-b");
    let mut inbox_a = subscriber.subscribe(&a).await;
    let mut inbox_b = subscriber.subscribe(&b).await;
    let batch: Vec<BatchEvent> = [(&a, "first"), (&b, "second"), (&a, "third")]
        .into_iter()
        .map(|(channel, name)| BatchEvent {
            channel: channel.clone(),
            name: event(name),
            data: json!({"name": name}),
        })
        .collect();
    realtime.trigger_batch(&batch).await.expect("batch");
    assert_eq!(expect(inbox_a.as_mut(), "first").await.event, "first");
    assert_eq!(expect(inbox_a.as_mut(), "third").await.event, "third");
    assert_eq!(expect(inbox_b.as_mut(), "second").await.event, "second");
}

/// Empty or oversized channel lists, oversized data and oversized batches are
/// `InvalidInput` naming the field, and nothing of them is delivered.
pub async fn invalid_triggers_are_refused_and_deliver_nothing(
    realtime: &dyn Realtime,
    subscriber: &dyn Subscriber,
) {
    let channel = unique_channel("invalid");
    let mut inbox = subscriber.subscribe(&channel).await;
    let field = |result: crate::Result<()>| {
        let err = result.expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        err.field().map(str::to_owned)
    };
    assert_eq!(
        field(realtime.trigger(&[], &event("e"), &json!({})).await).as_deref(),
        Some("channels")
    );
    let many: Vec<ChannelName> = (0..101).map(|_| channel.clone()).collect();
    assert_eq!(
        field(realtime.trigger(&many, &event("e"), &json!({})).await).as_deref(),
        Some("channels")
    );
    let big = json!({"blob": "x".repeat(11 * 1024)});
    assert_eq!(
        field(
            realtime
                .trigger(std::slice::from_ref(&channel), &event("e"), &big)
                .await
        )
        .as_deref(),
        Some("data")
    );
    let one = BatchEvent {
        channel: channel.clone(),
        name: event("e"),
        data: json!({}),
    };
    assert_eq!(
        field(realtime.trigger_batch(&vec![one.clone(); 11]).await).as_deref(),
        Some("batch")
    );
    let mut partly_bad = vec![one; 2];
    partly_bad[1].data = big;
    assert!(realtime.trigger_batch(&partly_bad).await.is_err());
    assert_eq!(
        inbox.next(QUIET).await,
        None,
        "a refused call delivers nothing"
    );
}

/// On a `private-encrypted-` channel the backend either encrypts (the subscriber sees
/// `{nonce, ciphertext}`, never the plain data) or refuses with `InvalidInput` (or `Config`
/// when it lacks the master key).
pub async fn encrypted_payloads_never_travel_in_clear(
    realtime: &dyn Realtime,
    subscriber: &dyn Subscriber,
) {
    let name = format!("private-encrypted-{}", unique_channel("secret"));
    let channel = ChannelName::new(name).expect("a valid channel name");
    let mut inbox = subscriber.subscribe(&channel).await;
    let secret_words = "the meeting moved to 3pm";
    let result = realtime
        .trigger(
            std::slice::from_ref(&channel),
            &event("moved"),
            &json!({"note": secret_words}),
        )
        .await;
    match result {
        Err(err) => {
            assert!(
                matches!(err.kind(), ErrorKind::InvalidInput | ErrorKind::Config),
                "{err}"
            );
            assert_eq!(inbox.next(QUIET).await, None);
        }
        Ok(()) => {
            let got = expect(inbox.as_mut(), "the encrypted event").await;
            assert!(
                !got.data.contains(secret_words),
                "plain text on an encrypted channel"
            );
            let data: Value = serde_json::from_str(&got.data).expect("data is JSON");
            assert!(
                data["nonce"].is_string() && data["ciphertext"].is_string(),
                "{data}"
            );
        }
    }
}
