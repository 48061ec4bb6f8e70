//! Event validation with configurable limits, shared by every place that accepts events.

use crate::env::Env;
use crate::error::{Error, Result};
use crate::event::Event;

/// Limits an event batch must respect before anything of it is accepted.
///
/// The defaults follow Inngest's: names up to 256 bytes, 256 KiB of payload per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventLimits {
    /// Longest event name, in bytes.
    pub max_name_len: usize,
    /// Largest serialized event (`name`, `data`, `id`, `user`), in bytes
    /// (`INFRA_JOBS_MAX_EVENT_BYTES`, default 256 KiB).
    pub max_event_bytes: usize,
    /// Most events in one batch (`INFRA_JOBS_MAX_BATCH`, default 5,000).
    pub max_batch: usize,
    /// Longest event `id` (idempotency key), in bytes.
    pub max_id_len: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_name_len: 256,
            max_event_bytes: 256 * 1024,
            max_batch: 5_000,
            max_id_len: 256,
        }
    }
}

impl EventLimits {
    /// The defaults overridden by `INFRA_JOBS_MAX_EVENT_BYTES` and `INFRA_JOBS_MAX_BATCH`.
    pub fn from_env(env: &Env) -> Result<Self> {
        let mut limits = EventLimits::default();
        if let Some(bytes) = env.integer::<usize>("INFRA_JOBS_MAX_EVENT_BYTES")? {
            if bytes == 0 {
                return Err(Error::config(
                    "INFRA_JOBS_MAX_EVENT_BYTES",
                    "must be above 0",
                ));
            }
            limits.max_event_bytes = bytes;
        }
        if let Some(batch) = env.integer::<usize>("INFRA_JOBS_MAX_BATCH")? {
            if batch == 0 {
                return Err(Error::config("INFRA_JOBS_MAX_BATCH", "must be above 0"));
            }
            limits.max_batch = batch;
        }
        Ok(limits)
    }

    /// Sets the largest serialized event.
    pub fn with_max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// Sets the most events in one batch.
    pub fn with_max_batch(mut self, batch: usize) -> Self {
        self.max_batch = batch;
        self
    }

    /// Checks one event: a non-empty name within the length limit, object (or null) data,
    /// an id within its limit and a serialized size within [`Self::max_event_bytes`].
    pub fn validate(&self, event: &Event) -> Result<()> {
        event.validate()?;
        if event.name.len() > self.max_name_len {
            return Err(Error::invalid_input(
                "name",
                format!(
                    "is {} bytes, over the limit of {}",
                    event.name.len(),
                    self.max_name_len
                ),
            )
            .with_context("limit", self.max_name_len.to_string()));
        }
        if let Some(id) = &event.id {
            if id.is_empty() {
                return Err(Error::invalid_input("id", "must not be empty when set"));
            }
            if id.len() > self.max_id_len {
                return Err(Error::invalid_input(
                    "id",
                    format!(
                        "is {} bytes, over the limit of {}",
                        id.len(),
                        self.max_id_len
                    ),
                )
                .with_context("limit", self.max_id_len.to_string()));
            }
        }
        let size = serde_json::to_vec(event)?.len();
        if size > self.max_event_bytes {
            return Err(Error::invalid_input(
                "data",
                format!(
                    "makes the event {size} bytes, over the limit of {} bytes",
                    self.max_event_bytes
                ),
            )
            .with_context("limit", self.max_event_bytes.to_string()));
        }
        Ok(())
    }

    /// Checks a whole batch before any of it is accepted; the error names the first bad
    /// event's index as context `index`.
    pub fn validate_batch(&self, events: &[Event]) -> Result<()> {
        if events.len() > self.max_batch {
            return Err(Error::invalid_input(
                "events",
                format!(
                    "holds {} events, over the limit of {} per batch",
                    events.len(),
                    self.max_batch
                ),
            )
            .with_context("limit", self.max_batch.to_string()));
        }
        for (index, event) in events.iter().enumerate() {
            self.validate(event)
                .map_err(|e| e.with_context("index", index.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    #[test]
    fn names_the_field_and_the_limit() {
        let limits = EventLimits::default().with_max_event_bytes(100);
        let err = limits
            .validate(&Event::new("a", json!({ "x": "y".repeat(200) })))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some("data"));
        assert_eq!(err.context("limit"), Some("100"));

        let err = limits
            .validate(&Event::new("n".repeat(300), json!({})))
            .unwrap_err();
        assert_eq!(err.field(), Some("name"));
        assert_eq!(err.context("limit"), Some("256"));

        let err = limits
            .validate(&Event::new("a", json!("text")))
            .unwrap_err();
        assert_eq!(err.field(), Some("data"));
        let err = limits.validate(&Event::new(" ", json!({}))).unwrap_err();
        assert_eq!(err.field(), Some("name"));
    }

    #[test]
    fn batches_are_checked_whole() {
        let limits = EventLimits::default().with_max_batch(2);
        let ok = Event::new("a", json!({}));
        let err = limits
            .validate_batch(&[ok.clone(), ok.clone(), ok.clone()])
            .unwrap_err();
        assert_eq!(err.field(), Some("events"));
        assert_eq!(err.context("limit"), Some("2"));
        let err = limits
            .validate_batch(&[ok.clone(), Event::new("", json!({}))])
            .unwrap_err();
        assert_eq!(err.field(), Some("name"));
        assert_eq!(err.context("index"), Some("1"));
        limits.validate_batch(&[ok.clone(), ok]).unwrap();
    }

    #[test]
    fn reads_limits_from_env() {
        let env = Env::from_pairs([
            ("INFRA_JOBS_MAX_EVENT_BYTES", "1024"),
            ("INFRA_JOBS_MAX_BATCH", "10"),
        ]);
        let limits = EventLimits::from_env(&env).unwrap();
        assert_eq!(limits.max_event_bytes, 1024);
        assert_eq!(limits.max_batch, 10);
        let err =
            EventLimits::from_env(&Env::from_pairs([("INFRA_JOBS_MAX_BATCH", "0")])).unwrap_err();
        assert_eq!(err.variable(), Some("INFRA_JOBS_MAX_BATCH"));
    }
}
