//! Limits of Pusher's HTTP API, enforced before anything is sent.
// Without a backend feature only the constants are used.
#![cfg_attr(not(any(feature = "pusher", feature = "server")), allow(dead_code))]

use infra_core::{BatchEvent, ChannelName, Error, Result};

/// Channels one trigger may name.
pub const MAX_CHANNELS_PER_TRIGGER: usize = 100;
/// Events one batch may hold.
pub const MAX_BATCH_EVENTS: usize = 10;
/// Bytes of encoded data one event may carry (Pusher's clusters answer 413 beyond).
pub const MAX_DATA_BYTES: usize = 10 * 1024;

/// Checks a trigger's channels and encodes its data.
pub(crate) fn check_trigger(channels: &[ChannelName], data: &serde_json::Value) -> Result<String> {
    if channels.is_empty() {
        return Err(Error::invalid_input(
            "channels",
            "must name at least one channel",
        ));
    }
    if channels.len() > MAX_CHANNELS_PER_TRIGGER {
        return Err(Error::invalid_input(
            "channels",
            format_args!(
                "names {} channels; the limit is {MAX_CHANNELS_PER_TRIGGER}",
                channels.len()
            ),
        ));
    }
    if channels.len() > 1
        && let Some(encrypted) = channels.iter().find(|c| c.is_encrypted())
    {
        return Err(Error::invalid_input(
            "channels",
            format_args!(
                "names the encrypted channel `{encrypted}` among {} channels; an encrypted \
                 channel must be triggered alone (its data is sealed with its own secret)",
                channels.len()
            ),
        ));
    }
    encode_data(data)
}

/// Checks a batch's size and each event's data; returns the encoded data in order.
pub(crate) fn check_batch(batch: &[BatchEvent]) -> Result<Vec<String>> {
    if batch.is_empty() {
        return Err(Error::invalid_input(
            "batch",
            "must hold at least one event",
        ));
    }
    if batch.len() > MAX_BATCH_EVENTS {
        return Err(Error::invalid_input(
            "batch",
            format_args!(
                "holds {} events; the limit is {MAX_BATCH_EVENTS}",
                batch.len()
            ),
        ));
    }
    batch
        .iter()
        .map(|e| check_trigger(std::slice::from_ref(&e.channel), &e.data))
        .collect()
}

/// Pusher carries data as a JSON-encoded string; a string value is sent as it is.
pub(crate) fn encode_data(data: &serde_json::Value) -> Result<String> {
    let encoded = match data {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string(other)?,
    };
    check_data_size(&encoded)?;
    Ok(encoded)
}

/// Checks the size of data as it goes on the wire (after encryption, when sealed).
pub(crate) fn check_data_size(encoded: &str) -> Result<()> {
    if encoded.len() > MAX_DATA_BYTES {
        return Err(Error::invalid_input(
            "data",
            format_args!("is {} bytes; the limit is {MAX_DATA_BYTES}", encoded.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra_core::EventName;
    use serde_json::json;

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    #[test]
    fn trigger_limits() {
        assert_eq!(
            check_trigger(&[], &json!({})).unwrap_err().field(),
            Some("channels")
        );
        let many: Vec<_> = (0..101).map(|i| ch(&format!("c{i}"))).collect();
        assert!(
            check_trigger(&many, &json!({}))
                .unwrap_err()
                .to_string()
                .contains("limit is 100")
        );
        let big = json!({ "x": "a".repeat(MAX_DATA_BYTES) });
        assert_eq!(
            check_trigger(&[ch("a")], &big).unwrap_err().field(),
            Some("data")
        );
        assert_eq!(check_trigger(&[ch("a")], &json!("raw")).unwrap(), "raw");
        assert_eq!(
            check_trigger(&[ch("a")], &json!({"k": 1})).unwrap(),
            r#"{"k":1}"#
        );
        assert!(check_trigger(&[ch("private-encrypted-x")], &json!({})).is_ok());
        let mixed = check_trigger(&[ch("private-encrypted-x"), ch("a")], &json!({})).unwrap_err();
        assert!(mixed.to_string().contains("triggered alone"), "{mixed}");
    }

    #[test]
    fn batch_limits() {
        let e = BatchEvent {
            channel: ch("a"),
            name: EventName::new("e").unwrap(),
            data: json!({}),
        };
        assert!(check_batch(&vec![e.clone(); 10]).is_ok());
        assert_eq!(
            check_batch(&vec![e; 11]).unwrap_err().field(),
            Some("batch")
        );
        assert_eq!(check_batch(&[]).unwrap_err().field(), Some("batch"));
    }
}
