//! `RealtimeNotify`: typed events to one user's private channel, over any [`Realtime`] backend.

use async_trait::async_trait;
use infra_core::{ChannelName, EventName, Realtime, Result};

use crate::realtime_event::RealtimeEvent;

/// `private-user-{user_id}`: the channel of everything for one user, where
/// [`RealtimeNotify::notify_user`] sends. An id the channel-name rules refuse (a space, say)
/// is an invalid-input error naming `channel`.
pub fn private_user_channel(user_id: &str) -> Result<ChannelName> {
    ChannelName::new(format!("private-user-{user_id}"))
}

/// Sends typed events to a user, for every [`Realtime`] (Pusher, the embedded server, a mock,
/// an `Arc<dyn Realtime>`).
///
/// ```
/// # async fn run(realtime: &dyn infra_core::Realtime) -> infra_core::Result<()> {
/// use infra_realtime::{RealtimeEvent, RealtimeNotify};
/// use serde::Serialize;
///
/// #[derive(Serialize)]
/// #[serde(rename_all = "camelCase")]
/// struct ReportReady {
///     report_id: String,
///     pages: u32,
/// }
///
/// impl RealtimeEvent for ReportReady {
///     const NAME: &'static str = "report.ready";
/// }
///
/// // `report.ready` with {"reportId": "r1", "pages": 3} on `private-user-42`.
/// let ready = ReportReady { report_id: "r1".into(), pages: 3 };
/// realtime.notify_user("42", &ready).await?;
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait RealtimeNotify: Realtime {
    /// Triggers `event` on the user's [`private_user_channel`], its data the event serialized.
    async fn notify_user<E: RealtimeEvent>(&self, user_id: &str, event: &E) -> Result<()> {
        let channel = private_user_channel(user_id)?;
        let name = EventName::new(E::NAME)?;
        let data = serde_json::to_value(event)?;
        self.trigger(&[channel], &name, &data).await
    }
}

impl<R: Realtime + ?Sized> RealtimeNotify for R {}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use infra_core::BatchEvent;
    use serde::Serialize;
    use serde_json::json;

    use super::*;

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

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Moved {
        meeting_id: u32,
    }

    impl RealtimeEvent for Moved {
        const NAME: &'static str = "meeting.moved";
    }

    struct Reserved;

    impl Serialize for Reserved {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_unit()
        }
    }

    impl RealtimeEvent for Reserved {
        const NAME: &'static str = "pusher:reserved";
    }

    #[tokio::test]
    async fn typed_events_go_to_the_users_private_channel() {
        let recorder = Arc::new(Recorder::default());
        let realtime: Arc<dyn Realtime> = recorder.clone();
        realtime
            .notify_user("42", &Moved { meeting_id: 7 })
            .await
            .unwrap();
        assert_eq!(
            recorder.seen.lock().unwrap().clone(),
            [(
                "private-user-42".to_owned(),
                "meeting.moved".to_owned(),
                json!({"meetingId": 7})
            )]
        );
        let err = realtime
            .notify_user("4 2", &Moved { meeting_id: 7 })
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some("channel"));
        let err = realtime.notify_user("42", &Reserved).await.unwrap_err();
        assert_eq!(err.field(), Some("event"));
        assert_eq!(
            recorder.seen.lock().unwrap().len(),
            1,
            "refusals send nothing"
        );
    }
}
