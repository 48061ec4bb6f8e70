//! In-process event broadcast, for code that wants to observe events as they are sent.
//!
//! It runs no functions: the embedded default backend is now [`crate::MemoryQueue`] under
//! [`crate::JobsRuntime`]. The bus stays for listeners written against it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use infra_core::{Event, EventSender, HealthCheck, Probe, Result};
use tokio::sync::broadcast;

use crate::event_id::{new_event_id, now_ms};

/// How long an event id suppresses duplicates, as Inngest does.
const DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Delivers events to in-process subscribers.
///
/// Events with an `id` seen in the last 24 hours are dropped (and their id returned), so
/// code written for Inngest's idempotency keys behaves the same locally.
pub struct LocalEventBus {
    sender: broadcast::Sender<Event>,
    seen: Mutex<HashMap<String, Instant>>,
}

impl LocalEventBus {
    /// A bus whose subscribers may lag by up to `capacity` events before missing some.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        LocalEventBus {
            sender,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Receives every event sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Whether `id` was sent within the dedup window; records it otherwise.
    fn is_duplicate(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, at| now.duration_since(*at) < DEDUP_WINDOW);
        }
        match seen.get(id) {
            Some(at) if now.duration_since(*at) < DEDUP_WINDOW => true,
            _ => {
                seen.insert(id.to_owned(), now);
                false
            }
        }
    }
}

impl Default for LocalEventBus {
    fn default() -> Self {
        LocalEventBus::new(1024)
    }
}

#[async_trait]
impl EventSender for LocalEventBus {
    async fn send(&self, event: Event) -> Result<String> {
        Ok(self.send_many(vec![event]).await?.remove(0))
    }

    async fn send_many(&self, events: Vec<Event>) -> Result<Vec<String>> {
        // Validate the whole batch first: a bad event must not half-deliver a batch.
        for event in &events {
            event.validate()?;
        }
        let mut ids = Vec::with_capacity(events.len());
        for mut event in events {
            let id = event.id.clone().unwrap_or_else(new_event_id);
            ids.push(id.clone());
            if event.id.is_some() && self.is_duplicate(&id) {
                continue;
            }
            event.id = Some(id);
            event.ts.get_or_insert_with(now_ms);
            // No subscriber is not an error: like a queue with no consumer yet.
            let _ = self.sender.send(event);
        }
        Ok(ids)
    }
}

#[async_trait]
impl HealthCheck for LocalEventBus {
    fn service(&self) -> &str {
        "jobs"
    }
    fn backend(&self) -> &str {
        "local"
    }
    async fn probe(&self) -> Result<Probe> {
        Ok(Probe::healthy(format!(
            "in-process event bus, {} subscriber(s)",
            self.sender.receiver_count()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra_core::ErrorKind;
    use serde_json::json;

    #[tokio::test]
    async fn delivers_to_subscribers_with_ids_and_timestamps() {
        let bus = LocalEventBus::default();
        let mut rx = bus.subscribe();
        let ids = bus
            .send_many(vec![
                Event::new("a/one", json!({"n": 1})),
                Event::new("a/two", json!({"n": 2})).with_id("fixed"),
            ])
            .await
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1], "fixed");
        let first = rx.recv().await.unwrap();
        assert_eq!(first.name, "a/one");
        assert_eq!(first.id.as_deref(), Some(ids[0].as_str()));
        assert!(first.ts.unwrap() > 1_600_000_000_000);
        assert_eq!(rx.recv().await.unwrap().data["n"], 2);
    }

    #[tokio::test]
    async fn duplicate_ids_are_delivered_once() {
        let bus = LocalEventBus::default();
        let mut rx = bus.subscribe();
        let e = Event::new("user/signup", json!({})).with_id("u-1");
        assert_eq!(bus.send(e.clone()).await.unwrap(), "u-1");
        assert_eq!(bus.send(e).await.unwrap(), "u-1");
        bus.send(Event::new("marker", json!({}))).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().name, "user/signup");
        assert_eq!(rx.recv().await.unwrap().name, "marker");
    }

    #[tokio::test]
    async fn invalid_batch_delivers_nothing() {
        let bus = LocalEventBus::default();
        let mut rx = bus.subscribe();
        let err = bus
            .send_many(vec![Event::new("ok", json!({})), Event::new("", json!({}))])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some("name"));
        assert!(rx.try_recv().is_err());
        let err = bus.send(Event::new("x", json!([1]))).await.unwrap_err();
        assert_eq!(err.field(), Some("data"));
    }
}
