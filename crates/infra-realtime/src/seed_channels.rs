//! The calendar agent's channel and event names (the TypeScript seed's `Channels` and
//! `Events`), so ported code reads the same and the frontend keeps listening where it did.

use infra_core::{ChannelName, Result};

/// Builders of the app's channel names. Each checks the id against the channel-name rules
/// (an id with, say, a space is an invalid-input error naming `channel`).
///
/// Sensitive data goes on private channels (the seed's advice): a user's own channel, a
/// workspace's and a calendar's are private; online status uses the presence channel.
#[derive(Debug, Clone, Copy)]
pub struct Channels;

impl Channels {
    /// `private-user-{user_id}`: everything for one user (the seed's `userPrivate`).
    pub fn user_private(user_id: &str) -> Result<ChannelName> {
        ChannelName::new(format!("private-user-{user_id}"))
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

/// The app's event names (the seed's `Events`), dotted as the calendar agent's page binds them
/// (`calendar.sync.started`, `task.created`, …).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel_kind::ChannelKind;
    use infra_core::EventName;

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
}
