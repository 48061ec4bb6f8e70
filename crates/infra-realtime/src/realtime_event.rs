//! `RealtimeEvent`: an event a backend sends to the app's frontend, typed.

use serde::Serialize;

/// An event for the app's frontend: its name, as the page binds it, and its data, as the
/// value serializes. The app declares its own; [`RealtimeNotify`](crate::RealtimeNotify)
/// sends them.
///
/// ```
/// use infra_realtime::RealtimeEvent;
/// use serde::Serialize;
///
/// /// `task.created` with `{"taskId"}`.
/// #[derive(Serialize)]
/// #[serde(rename_all = "camelCase")]
/// struct TaskCreated {
///     task_id: String,
/// }
///
/// impl RealtimeEvent for TaskCreated {
///     const NAME: &'static str = "task.created";
/// }
/// ```
pub trait RealtimeEvent: Serialize + Sync {
    /// The event name: 1 to 200 characters, not starting with `pusher:` or
    /// `pusher_internal:` ([`EventName`](infra_core::EventName) checks it when sent).
    const NAME: &'static str;
}
