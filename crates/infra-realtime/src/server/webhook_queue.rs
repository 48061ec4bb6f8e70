//! One app's webhook queue: events signed, batched and delivered by a background task with
//! retries and back-off, so a slow or failing receiver never holds up the connections.
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
use serde_json::Value;
use tokio::sync::mpsc;

use super::server_metrics::ServerMetrics;
use super::webhook_backlog::{Accepted, WebhookBacklog};
use super::webhook_event::WebhookEvent;

/// Events one POST carries at most.
const MAX_BATCH: usize = 100;
/// Events the worker holds (due, or waiting out the leave delay) before new ones are dropped
/// and counted.
pub(crate) const BACKLOG_CAPACITY: usize = 10_000;
/// Events on their way from the connections to the worker; the worker takes them within
/// microseconds unless it is busy delivering, when new ones are dropped and counted.
const HANDOVER_CAPACITY: usize = 1024;
/// The waits between one batch's attempts: 0.5 s doubling up to 60 s, jittered so a receiver
/// coming back is not hit by every node's retries at once. Attempts go on until the batch is
/// [`ServerConfig::webhook_retry_for`](super::ServerConfig) old (Pusher's 5 minutes by
/// default), when it is given up, logged and its events counted as dropped.
const DELIVERY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));

/// Whether a `channel_vacated` / `member_removed` still holds when it falls due (the channel
/// is still vacant, the user still gone) over the whole cluster; true when it cannot tell.
pub(crate) type StillLeft =
    Arc<dyn Fn(WebhookEvent) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

struct Target {
    url: url::Url,
    key: String,
    secret: Secret<String>,
    leave_delay: Duration,
    retry_for: Duration,
    still_left: Option<StillLeft>,
}

/// How many events the worker holds and how many were dropped, shared by the queue and its
/// worker.
#[derive(Default)]
struct Tally {
    held: AtomicUsize,
    dropped: AtomicU64,
    metrics: ServerMetrics,
}

impl Tally {
    fn dropped(&self, why: &str) {
        self.dropped_many(1, why);
    }

    fn dropped_many(&self, events: u64, why: &str) {
        let before = self.dropped.fetch_add(events, Ordering::Relaxed);
        self.metrics.webhooks_dropped(events);
        // A flood drops thousands: log the first and then ever more rarely.
        if (before + 1).is_power_of_two() || before == 0 || events > 1 {
            tracing::warn!(dropped = before + events, "webhook event(s) dropped: {why}");
        }
    }
}

/// The queue of one app's webhooks; its worker starts with the first event.
pub(crate) struct WebhookQueue {
    target: std::sync::Mutex<Option<Target>>,
    tx: OnceLock<mpsc::Sender<WebhookEvent>>,
    tally: Arc<Tally>,
}

impl WebhookQueue {
    pub fn new(
        url: url::Url,
        key: String,
        secret: Secret<String>,
        leave_delay: Duration,
        retry_for: Duration,
    ) -> Self {
        WebhookQueue {
            target: std::sync::Mutex::new(Some(Target {
                url,
                key,
                secret,
                leave_delay,
                retry_for,
                still_left: None,
            })),
            tx: OnceLock::new(),
            tally: Arc::default(),
        }
    }

    /// Events waiting for delivery (on their way to the worker, due, or waiting out the leave
    /// delay), and events dropped so far.
    pub fn counts(&self) -> (usize, u64) {
        let handed_over = self
            .tx
            .get()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity());
        (
            handed_over + self.tally.held.load(Ordering::Relaxed),
            self.tally.dropped.load(Ordering::Relaxed),
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

    /// Queues an event without waiting; drops and counts it when the worker cannot take it.
    pub fn push(&self, event: WebhookEvent) {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(HANDOVER_CAPACITY);
            let target = self.target.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(target) = target {
                tokio::spawn(run(target, rx, self.tally.clone()));
            }
            tx
        });
        if tx.try_send(event).is_err() {
            self.tally
                .dropped("the worker is busy delivering and its hand-over queue is full");
        }
    }
}

async fn run(target: Target, mut rx: mpsc::Receiver<WebhookEvent>, tally: Arc<Tally>) {
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
    let mut backlog = WebhookBacklog::new(BACKLOG_CAPACITY, target.leave_delay);
    let accept = |backlog: &mut WebhookBacklog, event| {
        if backlog.accept(event, Instant::now()) == Accepted::Full {
            tally.dropped("the backlog is full");
        }
    };
    let mut open = true;
    while open || !backlog.is_empty() {
        let next_due = backlog.next_due();
        let wait = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = rx.recv(), if open => match received {
                Some(event) => accept(&mut backlog, event),
                None => open = false,
            },
            () = wait => {}
        }
        // Take whatever else already arrived, so one POST carries a burst.
        while let Ok(event) = rx.try_recv() {
            accept(&mut backlog, event);
        }
        let due = backlog.take_due(Instant::now(), MAX_BATCH);
        tally
            .held
            .store(backlog.len() + due.len(), Ordering::Relaxed);
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
            let count = events.len() as u64;
            if !deliver(&http, &target, events, &tally.metrics).await {
                tally.dropped_many(
                    count,
                    "the receiver did not take them within the retry time",
                );
            }
        }
        tally.held.store(backlog.len(), Ordering::Relaxed);
    }
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
    let signature = infra_core::hmac_sha256_hex(secret, body.as_bytes());
    (body, signature)
}

/// Delivers one batch, retrying until it is `retry_for` old; false when it was given up.
async fn deliver(
    http: &reqwest::Client,
    target: &Target,
    events: Vec<Value>,
    metrics: &ServerMetrics,
) -> bool {
    let started = Instant::now();
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let (body, signature) = sign_batch(&target.secret, time_ms, events);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let result = http
            .post(target.url.clone())
            .header("Content-Type", "application/json")
            .header("X-Pusher-Key", &target.key)
            .header("X-Pusher-Signature", &signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(reply) if reply.status().is_success() => {
                metrics.webhook(true);
                return true;
            }
            Ok(reply) => {
                tracing::warn!(status = %reply.status(), attempt, "webhook refused");
            }
            Err(e) => tracing::warn!(error = %e.without_url(), attempt, "webhook not delivered"),
        }
        let wait = DELIVERY_BACKOFF.delay(attempt);
        let elapsed = started.elapsed();
        if elapsed >= target.retry_for {
            break;
        }
        // The last wait is cut short so the last attempt falls at the retry time at most.
        tokio::time::sleep(wait.min(target.retry_for - elapsed)).await;
    }
    metrics.webhook(false);
    tracing::error!(
        host = target.url.host_str().unwrap_or("?"),
        "webhook batch given up after {attempt} attempts"
    );
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
}
