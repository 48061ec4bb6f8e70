//! What the app tells its page live — the TypeScript module's `Channels`, `Events` and
//! `notify…` helpers (its `pusher.ts`): the channel names, the event names the page binds, and
//! the typed events of a calendar sync, sent with
//! [`RealtimeNotify::notify_user`](infra::realtime::RealtimeNotify::notify_user).
//!
//! The names and the JSON keys are the ones the TypeScript app uses, so the page (or the
//! TypeScript app's own frontend) keeps listening where it did.

use infra::realtime::{RealtimeEvent, private_user_channel};
use infra::{ChannelName, Result};
use serde::Serialize;

/// Builders of the app's channel names. Each checks the id against the channel-name rules
/// (an id with, say, a space is an invalid-input error naming `channel`).
///
/// Sensitive data goes on private channels: a user's own channel, a workspace's and a
/// calendar's are private; online status uses the presence channel.
#[derive(Debug, Clone, Copy)]
pub struct Channels;

impl Channels {
    /// `private-user-{user_id}`: everything for one user (`Channels.userPrivate`).
    pub fn user_private(user_id: &str) -> Result<ChannelName> {
        private_user_channel(user_id)
    }

    /// `private-workspace-{workspace_id}`: events every member of a workspace sees.
    pub fn workspace(workspace_id: &str) -> Result<ChannelName> {
        ChannelName::new(format!("private-workspace-{workspace_id}"))
    }

    /// `presence-workspace-{workspace_id}`: who of a workspace is online.
    pub fn presence_workspace(workspace_id: &str) -> Result<ChannelName> {
        ChannelName::new(format!("presence-workspace-{workspace_id}"))
    }

    /// `private-calendar-{calendar_id}`: changes to one calendar's events.
    pub fn calendar(calendar_id: &str) -> Result<ChannelName> {
        ChannelName::new(format!("private-calendar-{calendar_id}"))
    }
}

/// The app's event names (`Events`), dotted as the page binds them.
#[derive(Debug, Clone, Copy)]
pub struct Events;

impl Events {
    /// A calendar sync began.
    pub const CALENDAR_SYNC_STARTED: &str = "calendar.sync.started";
    /// A calendar sync finished.
    pub const CALENDAR_SYNC_COMPLETED: &str = "calendar.sync.completed";
    /// A calendar sync failed.
    pub const CALENDAR_SYNC_FAILED: &str = "calendar.sync.failed";
    /// A task was created.
    pub const TASK_CREATED: &str = "task.created";
    /// A task changed.
    pub const TASK_UPDATED: &str = "task.updated";
    /// A task was deleted.
    pub const TASK_DELETED: &str = "task.deleted";
    /// A calendar event was created.
    pub const CALENDAR_EVENT_CREATED: &str = "calendar.event.created";
    /// A calendar event changed.
    pub const CALENDAR_EVENT_UPDATED: &str = "calendar.event.updated";
    /// A calendar event was deleted.
    pub const CALENDAR_EVENT_DELETED: &str = "calendar.event.deleted";
    /// A notification for the user.
    pub const NOTIFICATION: &str = "notification";

    /// Every name above.
    pub const ALL: [&str; 10] = [
        Events::CALENDAR_SYNC_STARTED,
        Events::CALENDAR_SYNC_COMPLETED,
        Events::CALENDAR_SYNC_FAILED,
        Events::TASK_CREATED,
        Events::TASK_UPDATED,
        Events::TASK_DELETED,
        Events::CALENDAR_EVENT_CREATED,
        Events::CALENDAR_EVENT_UPDATED,
        Events::CALENDAR_EVENT_DELETED,
        Events::NOTIFICATION,
    ];
}

/// `calendar.sync.started` with `{"calendarId"}` (`notifyCalendarSyncStarted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CalendarSyncStarted {
    /// The calendar being synced.
    pub calendar_id: String,
}

impl RealtimeEvent for CalendarSyncStarted {
    const NAME: &'static str = Events::CALENDAR_SYNC_STARTED;
}

/// `calendar.sync.completed` with `{"calendarId", "eventsSynced"}`
/// (`notifyCalendarSyncCompleted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CalendarSyncCompleted {
    /// The calendar synced.
    pub calendar_id: String,
    /// How many of its events were written.
    pub events_synced: u64,
}

impl RealtimeEvent for CalendarSyncCompleted {
    const NAME: &'static str = Events::CALENDAR_SYNC_COMPLETED;
}

/// `calendar.sync.failed` with `{"calendarId", "reason"}` (`notifyCalendarSyncFailed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CalendarSyncFailed {
    /// The calendar whose sync failed.
    pub calendar_id: String,
    /// Why, for the user.
    pub reason: String,
}

impl RealtimeEvent for CalendarSyncFailed {
    const NAME: &'static str = Events::CALENDAR_SYNC_FAILED;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use infra::realtime::{ChannelKind, RealtimeNotify};
    use infra::{BatchEvent, EventName, Realtime, async_trait};
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

    #[test]
    fn names_are_valid_and_of_the_right_kind() {
        assert_eq!(
            Channels::user_private("42").unwrap().as_str(),
            "private-user-42"
        );
        assert_eq!(
            ChannelKind::of(&Channels::presence_workspace("w1").unwrap()),
            ChannelKind::Presence
        );
        assert_eq!(
            ChannelKind::of(&Channels::workspace("w1").unwrap()),
            ChannelKind::Private
        );
        assert_eq!(
            Channels::calendar("c 1").unwrap_err().field(),
            Some("channel")
        );
        for name in Events::ALL {
            EventName::new(name).unwrap();
        }
    }

    #[tokio::test]
    async fn sync_events_reach_the_users_private_channel_with_the_typescript_keys() {
        let recorder = Arc::new(Recorder::default());
        let realtime: Arc<dyn Realtime> = recorder.clone();
        let calendar_id = "cal-1".to_owned();
        realtime
            .notify_user(
                "42",
                &CalendarSyncStarted {
                    calendar_id: calendar_id.clone(),
                },
            )
            .await
            .unwrap();
        realtime
            .notify_user(
                "42",
                &CalendarSyncCompleted {
                    calendar_id: calendar_id.clone(),
                    events_synced: 17,
                },
            )
            .await
            .unwrap();
        realtime
            .notify_user(
                "42",
                &CalendarSyncFailed {
                    calendar_id,
                    reason: "token expired".into(),
                },
            )
            .await
            .unwrap();
        let channel = "private-user-42".to_owned();
        assert_eq!(
            recorder.seen.lock().unwrap().clone(),
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
                    channel,
                    Events::CALENDAR_SYNC_FAILED.to_owned(),
                    json!({"calendarId": "cal-1", "reason": "token expired"})
                ),
            ]
        );
    }
}
