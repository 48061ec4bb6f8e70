//! The in-process hub: the embedded default when Pusher is not configured.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use infra_core::{BatchEvent, ChannelName, EventName, HealthCheck, Probe, Realtime, Result};
use tokio::sync::broadcast;

use crate::limits::{check_batch, check_trigger};

/// An event delivered to a subscriber of the local hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeMessage {
    /// The channel it was triggered on.
    pub channel: String,
    /// The event name.
    pub event: String,
    /// The data as Pusher would carry it: a JSON-encoded string.
    pub data: String,
}

/// Delivers triggered events to in-process subscribers, channel by channel, with the same
/// validation and limits as the Pusher client.
pub struct LocalRealtime {
    channels: Mutex<HashMap<String, broadcast::Sender<RealtimeMessage>>>,
    capacity: usize,
}

impl LocalRealtime {
    /// A hub whose subscribers may lag `capacity` messages behind before missing some.
    pub fn new(capacity: usize) -> Self {
        LocalRealtime {
            channels: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Receives what is triggered on `channel` from now on.
    pub fn subscribe(&self, channel: &ChannelName) -> broadcast::Receiver<RealtimeMessage> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(channel.as_str().to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    fn publish(&self, channel: &ChannelName, event: &EventName, data: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = channels.get(channel.as_str()) {
            let message = RealtimeMessage {
                channel: channel.to_string(),
                event: event.to_string(),
                data: data.to_owned(),
            };
            if sender.send(message).is_err() {
                // Every subscriber is gone: forget the channel (Pusher's "vacated").
                channels.remove(channel.as_str());
            }
        }
    }

    /// Channels with at least one subscriber.
    pub fn occupied_channels(&self) -> Vec<String> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = channels
            .iter()
            .filter(|(_, s)| s.receiver_count() > 0)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }
}

impl Default for LocalRealtime {
    fn default() -> Self {
        LocalRealtime::new(256)
    }
}

#[async_trait]
impl Realtime for LocalRealtime {
    async fn trigger(
        &self,
        channels: &[ChannelName],
        event: &EventName,
        data: &serde_json::Value,
    ) -> Result<()> {
        let encoded = check_trigger(channels, data)?;
        refuse_encrypted(channels.iter())?;
        for channel in channels {
            self.publish(channel, event, &encoded);
        }
        Ok(())
    }

    async fn trigger_batch(&self, batch: &[BatchEvent]) -> Result<()> {
        let encoded = check_batch(batch)?;
        refuse_encrypted(batch.iter().map(|e| &e.channel))?;
        for (event, data) in batch.iter().zip(encoded) {
            self.publish(&event.channel, &event.name, &data);
        }
        Ok(())
    }
}

/// The hub holds no master key, so it refuses encrypted channels rather than deliver their
/// data in clear.
fn refuse_encrypted<'a>(mut channels: impl Iterator<Item = &'a ChannelName>) -> Result<()> {
    match channels.find(|c| c.is_encrypted()) {
        Some(channel) => Err(infra_core::Error::invalid_input(
            "channels",
            format_args!(
                "`{channel}` is an encrypted channel; the in-process hub does not encrypt \
                 (configure Pusher with PUSHER_ENCRYPTION_MASTER_KEY)"
            ),
        )),
        None => Ok(()),
    }
}

#[async_trait]
impl HealthCheck for LocalRealtime {
    fn service(&self) -> &str {
        "realtime"
    }
    fn backend(&self) -> &str {
        "local"
    }
    async fn probe(&self) -> Result<Probe> {
        Ok(Probe::healthy(format!(
            "in-process hub, {} occupied channel(s)",
            self.occupied_channels().len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra_core::ErrorKind;
    use serde_json::json;

    fn ch(n: &str) -> ChannelName {
        ChannelName::new(n).unwrap()
    }

    #[tokio::test]
    async fn subscribers_receive_only_their_channels() {
        let hub = LocalRealtime::default();
        let mut a = hub.subscribe(&ch("a"));
        let mut b = hub.subscribe(&ch("b"));
        let ev = EventName::new("updated").unwrap();
        hub.trigger(&[ch("a")], &ev, &json!({"n": 1}))
            .await
            .unwrap();
        hub.trigger(&[ch("a"), ch("b")], &ev, &json!("plain"))
            .await
            .unwrap();
        assert_eq!(a.recv().await.unwrap().data, r#"{"n":1}"#);
        assert_eq!(a.recv().await.unwrap().data, "plain");
        let only_b = b.recv().await.unwrap();
        assert_eq!(
            (only_b.channel.as_str(), only_b.data.as_str()),
            ("b", "plain")
        );
        assert!(b.try_recv().is_err());
        assert_eq!(hub.occupied_channels(), vec!["a", "b"]);
    }

    #[tokio::test]
    async fn batch_is_validated_whole_before_delivery() {
        let hub = LocalRealtime::default();
        let mut a = hub.subscribe(&ch("a"));
        let good = BatchEvent {
            channel: ch("a"),
            name: EventName::new("e").unwrap(),
            data: json!({}),
        };
        let too_big = BatchEvent {
            data: json!("x".repeat(20_000)),
            ..good.clone()
        };
        let err = hub
            .trigger_batch(&[good.clone(), too_big])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            a.try_recv().is_err(),
            "nothing of a refused batch is delivered"
        );
        hub.trigger_batch(&[good]).await.unwrap();
        assert_eq!(a.recv().await.unwrap().event, "e");
    }

    #[tokio::test]
    async fn encrypted_channels_are_refused_not_sent_in_clear() {
        let hub = LocalRealtime::default();
        let mut inbox = hub.subscribe(&ch("private-encrypted-x"));
        let err = hub
            .trigger(
                &[ch("private-encrypted-x")],
                &EventName::new("e").unwrap(),
                &json!({}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(inbox.try_recv().is_err());
    }

    #[tokio::test]
    async fn vacated_channels_are_forgotten() {
        let hub = LocalRealtime::default();
        drop(hub.subscribe(&ch("gone")));
        hub.trigger(&[ch("gone")], &EventName::new("e").unwrap(), &json!({}))
            .await
            .unwrap();
        assert!(hub.occupied_channels().is_empty());
    }
}
