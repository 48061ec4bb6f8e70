//! The app's background events and the helpers that send them — the TypeScript module's
//! `scheduleCalendarSync` and `sendEmail` (its `jobs.ts`).
//!
//! The JSON keys are the ones the TypeScript app sends, so a function written on either side
//! reads the same events. The helpers are the app's own: `infra` sends any typed event with
//! `events.send(payload.to_event()?)`.

use infra::{EventSender, Result, TypedEvent};
use serde::{Deserialize, Serialize};

/// `calendar/sync.requested`: `{ "userId", "calendarId", "workspaceId" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalendarSyncRequested {
    /// The user whose calendar to sync.
    pub user_id: String,
    /// The calendar.
    pub calendar_id: String,
    /// The workspace.
    pub workspace_id: String,
}

impl TypedEvent for CalendarSyncRequested {
    const NAME: &'static str = "calendar/sync.requested";
}

/// `email/send.requested`: `{ "to", "subject", "template", "data" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailSendRequested {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The template's name.
    pub template: String,
    /// The template's variables (a JSON object).
    #[serde(default)]
    pub data: serde_json::Value,
}

impl TypedEvent for EmailSendRequested {
    const NAME: &'static str = "email/send.requested";
}

/// `scheduleCalendarSync(userId, calendarId, workspaceId)`; returns the event id.
pub async fn schedule_calendar_sync(
    events: &(impl EventSender + ?Sized),
    user_id: &str,
    calendar_id: &str,
    workspace_id: &str,
) -> Result<String> {
    let request = CalendarSyncRequested {
        user_id: user_id.to_owned(),
        calendar_id: calendar_id.to_owned(),
        workspace_id: workspace_id.to_owned(),
    };
    events.send(request.to_event()?).await
}

/// `sendEmail(to, subject, template, data)`; returns the event id.
pub async fn send_email(
    events: &(impl EventSender + ?Sized),
    to: &str,
    subject: &str,
    template: &str,
    data: serde_json::Value,
) -> Result<String> {
    let request = EmailSendRequested {
        to: to.to_owned(),
        subject: subject.to_owned(),
        template: template.to_owned(),
        data,
    };
    events.send(request.to_event()?).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_keys_match_the_typescript_app() {
        let event = CalendarSyncRequested {
            user_id: "u".into(),
            calendar_id: "c".into(),
            workspace_id: "w".into(),
        }
        .to_event()
        .unwrap();
        assert_eq!(event.name, "calendar/sync.requested");
        assert_eq!(
            event.data,
            json!({ "userId": "u", "calendarId": "c", "workspaceId": "w" })
        );
        let email = EmailSendRequested {
            to: "a@b.c".into(),
            subject: "Hi".into(),
            template: "welcome".into(),
            data: json!({ "name": "Ada" }),
        }
        .to_event()
        .unwrap();
        assert_eq!(email.name, "email/send.requested");
        assert_eq!(
            email.data,
            json!({ "to": "a@b.c", "subject": "Hi", "template": "welcome", "data": { "name": "Ada" } })
        );
    }
}
