//! The `EventSender` trait: events for background functions.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::trace_context::TraceContext;

/// An event, in the shape Inngest accepts.
///
/// ```
/// use infra_core::Event;
/// let event = Event::new("user/signed.up", serde_json::json!({ "userId": "u7" }))
///     .with_id("evt-7");
/// assert_eq!(event.name, "user/signed.up");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event name, such as `user/signed.up`.
    pub name: String,
    /// The payload; an object.
    #[serde(default)]
    pub data: serde_json::Value,
    /// An idempotency key: a second event with the same id is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When it happened, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    /// The user it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<serde_json::Value>,
    /// The trace the event was sent in (filled by the sender from the current span): the
    /// run it triggers continues it. Absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

impl Event {
    /// An event with a name and data.
    pub fn new(name: impl Into<String>, data: serde_json::Value) -> Self {
        Event {
            name: name.into(),
            data,
            id: None,
            ts: None,
            user: None,
            trace: None,
        }
    }

    /// Sets the idempotency key.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the timestamp in milliseconds.
    pub fn with_ts(mut self, ts_ms: i64) -> Self {
        self.ts = Some(ts_ms);
        self
    }

    /// Sets the user.
    pub fn with_user(mut self, user: serde_json::Value) -> Self {
        self.user = Some(user);
        self
    }

    /// Sets the trace the event continues.
    pub fn with_trace(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Checks the fields every backend requires: a non-empty name and object (or null) data.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid_input("name", "must not be empty"));
        }
        if !(self.data.is_object() || self.data.is_null()) {
            return Err(Error::invalid_input("data", "must be a JSON object"));
        }
        Ok(())
    }
}

/// Sends events to whatever runs background functions: the one way to send an event, on
/// every backend.
///
/// A typed payload ([`TypedEvent`](crate::TypedEvent)) is sent as its event:
/// `events.send(payload.to_event()?)`; an untyped one as `events.send(Event::new(name, data))`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventSender: Send + Sync {
    /// Sends one event; returns its id.
    async fn send(&self, event: Event) -> Result<String>;

    /// Sends several events in one call; returns their ids in order.
    async fn send_many(&self, events: Vec<Event>) -> Result<Vec<String>>;
}

#[async_trait]
impl<T: EventSender + ?Sized> EventSender for Arc<T> {
    async fn send(&self, event: Event) -> Result<String> {
        (**self).send(event).await
    }
    async fn send_many(&self, events: Vec<Event>) -> Result<Vec<String>> {
        (**self).send_many(events).await
    }
}
