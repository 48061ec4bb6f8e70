//! Events and step outputs as the queue stores them: JSON in `jsonb` columns, read back as
//! text.

use infra_core::{Error, ErrorKind, Event, Result};

/// The stored form of `event`.
pub(crate) fn encode_event(event: &Event) -> diesel::QueryResult<String> {
    serde_json::to_string(event).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

/// An event read back from the queue; a row that is not one is a `Decode` error.
pub(crate) fn decode_event(raw: &str) -> Result<Event> {
    serde_json::from_str(raw).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("stored job event is not an event: {e}"),
        )
        .with_source(e)
    })
}

/// A recorded step output read back; a row that is not JSON is a `Decode` error.
pub(crate) fn decode_output(raw: &str) -> Result<serde_json::Value> {
    serde_json::from_str(raw).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("a recorded step is not JSON: {e}"),
        )
        .with_source(e)
    })
}
