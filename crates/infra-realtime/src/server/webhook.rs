//! Webhooks: signed, batched, delivered by a background task with retries and back-off, so a
//! slow or failing receiver never holds up the connections.
//!
//! `channel_vacated` and `member_removed` wait [`ServerConfig::leave_delay`](super::ServerConfig)
//! first: when the channel is occupied again (or the user re-joins) within that time, both
//! events are dropped, so a page reload does not look like leaving and coming back. On a
//! cluster the return may land on another node: a leave is then asked again of the cluster
//! when it falls due, and dropped when it no longer holds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use infra_core::{Backoff, Secret};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::signature::hmac_hex;

/// Events one POST carries at most.
const MAX_BATCH: usize = 100;
/// Events waiting for delivery before new ones are dropped (and logged).
const QUEUE_CAPACITY: usize = 10_000;
/// Attempts per batch before it is given up (and logged).
const MAX_ATTEMPTS: u32 = 5;
/// Waits between deliveries of one batch: 0.5 s doubling up to 30 s, jittered so a receiver
/// coming back is not hit by every node's retries at once.
const DELIVERY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// One webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WebhookEvent {
    ChannelOccupied {
        channel: String,
    },
    ChannelVacated {
        channel: String,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    ClientEvent {
        channel: String,
        event: String,
        data: String,
        socket_id: String,
        user_id: Option<String>,
    },
}

impl WebhookEvent {
    fn to_json(&self) -> Value {
        match self {
            WebhookEvent::ChannelOccupied { channel } => {
                json!({"name": "channel_occupied", "channel": channel})
            }
            WebhookEvent::ChannelVacated { channel } => {
                json!({"name": "channel_vacated", "channel": channel})
            }
            WebhookEvent::MemberAdded { channel, user_id } => {
                json!({"name": "member_added", "channel": channel, "user_id": user_id})
            }
            WebhookEvent::MemberRemoved { channel, user_id } => {
                json!({"name": "member_removed", "channel": channel, "user_id": user_id})
            }
            WebhookEvent::ClientEvent {
                channel,
                event,
                data,
                socket_id,
                user_id,
            } => {
                let mut v = json!({"name": "client_event", "channel": channel, "event": event,
                    "data": data, "socket_id": socket_id});
                if let Some(user_id) = user_id {
                    v["user_id"] = json!(user_id);
                }
                v
            }
        }
    }

    /// The leave event this arrival cancels, if it is still waiting.
    fn cancels(&self, waiting: &WebhookEvent) -> bool {
        match (self, waiting) {
            (
                WebhookEvent::ChannelOccupied { channel },
                WebhookEvent::ChannelVacated { channel: c },
            ) => channel == c,
            (
                WebhookEvent::MemberAdded { channel, user_id },
                WebhookEvent::MemberRemoved {
                    channel: c,
                    user_id: u,
                },
            ) => channel == c && user_id == u,
            _ => false,
        }
    }

    fn is_leave(&self) -> bool {
        matches!(
            self,
            WebhookEvent::ChannelVacated { .. } | WebhookEvent::MemberRemoved { .. }
        )
    }
}

/// Whether a `channel_vacated` / `member_removed` still holds when it falls due (the channel
/// is still vacant, the user still gone) over the whole cluster; true when it cannot tell.
pub(crate) type StillLeft =
    Arc<dyn Fn(WebhookEvent) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

struct Target {
    url: url::Url,
    key: String,
    secret: Secret<String>,
    leave_delay: Duration,
    still_left: Option<StillLeft>,
}

/// How many events wait and how many were dropped, shared by the queue and its worker.
#[derive(Default)]
struct Backlog {
    waiting: AtomicUsize,
    dropped: AtomicU64,
}

/// The queue of one app's webhooks; its worker starts with the first event.
pub(crate) struct WebhookQueue {
    target: std::sync::Mutex<Option<Target>>,
    tx: OnceLock<mpsc::Sender<WebhookEvent>>,
    backlog: Arc<Backlog>,
}

impl WebhookQueue {
    pub fn new(url: url::Url, key: String, secret: Secret<String>, leave_delay: Duration) -> Self {
        WebhookQueue {
            target: std::sync::Mutex::new(Some(Target {
                url,
                key,
                secret,
                leave_delay,
                still_left: None,
            })),
            tx: OnceLock::new(),
            backlog: Arc::default(),
        }
    }

    /// Events waiting for delivery (handed over or due later), and events dropped so far.
    pub fn counts(&self) -> (usize, u64) {
        let handed_over = self
            .tx
            .get()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity());
        (
            handed_over + self.backlog.waiting.load(Ordering::Relaxed),
            self.backlog.dropped.load(Ordering::Relaxed),
        )
    }

    /// Asks `still_left` before sending a leave event that fell due (clustered nodes).
    pub fn with_leave_check(self, still_left: StillLeft) -> Self {
        if let Some(target) = self
            .target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            target.still_left = Some(still_left);
        }
        self
    }

    /// Queues an event without waiting; drops it (with a warning) when the queue is full.
    pub fn push(&self, event: WebhookEvent) {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            let target = self.target.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(target) = target {
                tokio::spawn(run(target, rx, self.backlog.clone()));
            }
            tx
        });
        if tx.try_send(event).is_err() {
            self.backlog.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("webhook queue full; an event was dropped");
        }
    }
}

async fn run(target: Target, mut rx: mpsc::Receiver<WebhookEvent>, backlog: Arc<Backlog>) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client");
            return;
        }
    };
    // Events in arrival order with the instant each becomes due.
    let mut pending: Vec<(Instant, WebhookEvent)> = Vec::new();
    let mut open = true;
    while open || !pending.is_empty() {
        let next_due = pending.iter().map(|(due, _)| *due).min();
        let wait = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = rx.recv(), if open => match received {
                Some(event) => accept(&mut pending, event, target.leave_delay),
                None => open = false,
            },
            () = wait => {}
        }
        // Take whatever else already arrived, so one POST carries a burst.
        while let Ok(event) = rx.try_recv() {
            accept(&mut pending, event, target.leave_delay);
        }
        let now = Instant::now();
        let mut due = Vec::new();
        pending.retain(|(at, event)| {
            if *at <= now && due.len() < MAX_BATCH {
                due.push(event.clone());
                false
            } else {
                true
            }
        });
        backlog.waiting.store(pending.len(), Ordering::Relaxed);
        let mut events = Vec::with_capacity(due.len());
        for event in due {
            let holds = match &target.still_left {
                Some(still_left) if event.is_leave() => still_left(event.clone()).await,
                _ => true,
            };
            if holds {
                events.push(event.to_json());
            }
        }
        if !events.is_empty() {
            deliver(&http, &target, events).await;
        }
    }
}

fn accept(pending: &mut Vec<(Instant, WebhookEvent)>, event: WebhookEvent, delay: Duration) {
    if let Some(i) = pending.iter().position(|(_, w)| event.cancels(w)) {
        pending.remove(i);
        return;
    }
    let due = if event.is_leave() {
        Instant::now() + delay
    } else {
        Instant::now()
    };
    pending.push((due, event));
}

/// Body and `X-Pusher-Signature` of one delivery.
pub(crate) fn sign_batch(
    secret: &Secret<String>,
    time_ms: u128,
    events: Vec<Value>,
) -> (String, String) {
    // `time_ms` first, as Pusher sends it (serde_json's maps would sort the keys).
    let body = format!(
        "{{\"time_ms\":{time_ms},\"events\":{}}}",
        Value::Array(events)
    );
    let signature = hmac_hex(secret, body.as_bytes());
    (body, signature)
}

async fn deliver(http: &reqwest::Client, target: &Target, events: Vec<Value>) {
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let (body, signature) = sign_batch(&target.secret, time_ms, events);
    for attempt in 1..=MAX_ATTEMPTS {
        let result = http
            .post(target.url.clone())
            .header("Content-Type", "application/json")
            .header("X-Pusher-Key", &target.key)
            .header("X-Pusher-Signature", &signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(reply) if reply.status().is_success() => return,
            Ok(reply) => {
                tracing::warn!(status = %reply.status(), attempt, "webhook refused");
            }
            Err(e) => tracing::warn!(error = %e.without_url(), attempt, "webhook not delivered"),
        }
        if attempt < MAX_ATTEMPTS {
            tokio::time::sleep(DELIVERY_BACKOFF.delay(attempt)).await;
        }
    }
    tracing::error!(
        host = target.url.host_str().unwrap_or("?"),
        "webhook batch given up after {MAX_ATTEMPTS} attempts"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_signed_over_the_raw_body() {
        let secret = Secret::new("7ad3773142a6692b25b8".to_owned());
        let (body, signature) = sign_batch(
            &secret,
            1327078148132,
            vec![json!({"name": "channel_occupied", "channel": "test_channel"})],
        );
        assert_eq!(
            body,
            r#"{"time_ms":1327078148132,"events":[{"channel":"test_channel","name":"channel_occupied"}]}"#
        );
        crate::signature::verify_webhook("k", &secret, "k", &signature, body.as_bytes()).unwrap();
    }

    #[test]
    fn a_quick_return_cancels_the_leave() {
        let mut pending = Vec::new();
        let d = Duration::from_secs(3);
        accept(
            &mut pending,
            WebhookEvent::ChannelVacated {
                channel: "a".into(),
            },
            d,
        );
        accept(
            &mut pending,
            WebhookEvent::ChannelOccupied {
                channel: "a".into(),
            },
            d,
        );
        assert!(pending.is_empty());
        accept(
            &mut pending,
            WebhookEvent::MemberRemoved {
                channel: "p".into(),
                user_id: "1".into(),
            },
            d,
        );
        accept(
            &mut pending,
            WebhookEvent::MemberAdded {
                channel: "p".into(),
                user_id: "2".into(),
            },
            d,
        );
        assert_eq!(pending.len(), 2);
        assert!(
            pending[0].0 > pending[1].0,
            "the leave waits, the join does not"
        );
    }
}
