//! The seed's notify helpers, over any [`Realtime`] backend.

use async_trait::async_trait;
use infra_core::{ChannelName, EventName, Realtime, Result};
use serde::Serialize;
use serde_json::json;

use crate::seed_channels::{Channels, Events};

/// The seed's `triggerEvent` and `notify…` helpers, for every [`Realtime`] (Pusher, the
/// embedded server, a mock, an `Arc<dyn Realtime>`).
///
/// Every helper triggers on the user's [`Channels::user_private`] channel; payload keys are
/// camelCase as the seed's frontend reads them.
#[async_trait]
pub trait RealtimeNotify: Realtime {
    /// The seed's `triggerEvent(channel, event, data)`: names given as strings, checked.
    async fn trigger_event(
        &self,
        channel: &str,
        event: &str,
        data: &serde_json::Value,
    ) -> Result<()> {
        let channel = ChannelName::new(channel)?;
        let event = EventName::new(event)?;
        self.trigger(&[channel], &event, data).await
    }

    /// [`Events::CALENDAR_SYNC_STARTED`] with `{"calendarId"}`.
    async fn notify_calendar_sync_started(&self, user_id: &str, calendar_id: &str) -> Result<()> {
        notify(
            self,
            user_id,
            Events::CALENDAR_SYNC_STARTED,
            json!({ "calendarId": calendar_id }),
        )
        .await
    }

    /// [`Events::CALENDAR_SYNC_COMPLETED`] with `{"calendarId", "eventsSynced"}`.
    async fn notify_calendar_sync_completed(
        &self,
        user_id: &str,
        calendar_id: &str,
        events_synced: u64,
    ) -> Result<()> {
        notify(
            self,
            user_id,
            Events::CALENDAR_SYNC_COMPLETED,
            json!({ "calendarId": calendar_id, "eventsSynced": events_synced }),
        )
        .await
    }

    /// [`Events::CALENDAR_SYNC_FAILED`] with `{"calendarId", "reason"}`.
    async fn notify_calendar_sync_failed(
        &self,
        user_id: &str,
        calendar_id: &str,
        reason: &str,
    ) -> Result<()> {
        notify(
            self,
            user_id,
            Events::CALENDAR_SYNC_FAILED,
            json!({ "calendarId": calendar_id, "reason": reason }),
        )
        .await
    }

    /// [`Events::TASK_CREATED`] with the task as its data.
    async fn notify_task_created<T: Serialize + Sync>(
        &self,
        user_id: &str,
        task: &T,
    ) -> Result<()> {
        notify(
            self,
            user_id,
            Events::TASK_CREATED,
            serde_json::to_value(task)?,
        )
        .await
    }
}

impl<R: Realtime + ?Sized> RealtimeNotify for R {}

async fn notify<R: Realtime + ?Sized>(
    realtime: &R,
    user_id: &str,
    event: &str,
    data: serde_json::Value,
) -> Result<()> {
    let channel = Channels::user_private(user_id)?;
    realtime
        .trigger(&[channel], &EventName::new(event)?, &data)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use infra_core::BatchEvent;
    use std::sync::{Arc, Mutex};

    /// Records what is triggered, in order.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<(String, String, serde_json::Value)>>,
    }

    #[async_trait]
    impl Realtime for Recorder {
        async fn trigger(
            &self,
            channels: &[ChannelName],
            event: &EventName,
            data: &serde_json::Value,
        ) -> Result<()> {
            let mut seen = self.seen.lock().unwrap();
            for channel in channels {
                seen.push((channel.to_string(), event.to_string(), data.clone()));
            }
            Ok(())
        }

        async fn trigger_batch(&self, batch: &[BatchEvent]) -> Result<()> {
            for e in batch {
                self.trigger(std::slice::from_ref(&e.channel), &e.name, &e.data)
                    .await?;
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn helpers_trigger_on_the_users_private_channel() {
        let recorder = Arc::new(Recorder::default());
        let realtime: Arc<dyn Realtime> = recorder.clone();
        realtime
            .notify_calendar_sync_started("42", "cal-1")
            .await
            .unwrap();
        realtime
            .notify_calendar_sync_completed("42", "cal-1", 17)
            .await
            .unwrap();
        realtime
            .notify_calendar_sync_failed("42", "cal-1", "token expired")
            .await
            .unwrap();
        realtime
            .notify_task_created("42", &json!({"id": "t1", "title": "Call Ana"}))
            .await
            .unwrap();
        realtime
            .trigger_event("private-user-42", Events::NOTIFICATION, &json!("hi"))
            .await
            .unwrap();
        let seen = recorder.seen.lock().unwrap().clone();
        let channel = "private-user-42".to_owned();
        assert_eq!(
            seen,
            [
                (
                    channel.clone(),
                    Events::CALENDAR_SYNC_STARTED.to_owned(),
                    json!({"calendarId": "cal-1"})
                ),
                (
                    channel.clone(),
                    Events::CALENDAR_SYNC_COMPLETED.to_owned(),
                    json!({"calendarId": "cal-1", "eventsSynced": 17})
                ),
                (
                    channel.clone(),
                    Events::CALENDAR_SYNC_FAILED.to_owned(),
                    json!({"calendarId": "cal-1", "reason": "token expired"})
                ),
                (
                    channel.clone(),
                    Events::TASK_CREATED.to_owned(),
                    json!({"id": "t1", "title": "Call Ana"})
                ),
                (channel, Events::NOTIFICATION.to_owned(), json!("hi")),
            ]
        );
        let err = realtime
            .trigger_event("bad channel", "e", &json!({}))
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("channel"));
    }
}
