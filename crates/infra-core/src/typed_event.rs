//! Typed events: a payload type tied to its event name, checked by the compiler.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::event::Event;

/// A payload type that is always sent under one event name.
///
/// The sender (`events.send(payload.to_event()?)`) and the function receiving it both name
/// the type, so a renamed field or event is a compile error rather than a silent mismatch.
///
/// ```
/// use infra_core::TypedEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// #[serde(rename_all = "camelCase")]
/// struct UserSignedUp { user_id: String }
///
/// impl TypedEvent for UserSignedUp {
///     const NAME: &'static str = "user/signed.up";
/// }
///
/// let event = UserSignedUp { user_id: "u1".into() }.to_event().unwrap();
/// assert_eq!(event.name, "user/signed.up");
/// assert_eq!(event.data["userId"], "u1");
/// ```
pub trait TypedEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event name, such as `user/signed.up`.
    const NAME: &'static str;

    /// The untyped event: [`Self::NAME`] with `self` as its `data` object.
    fn to_event(&self) -> Result<Event> {
        let data = serde_json::to_value(self)?;
        if !data.is_object() {
            return Err(Error::invalid_input(
                "data",
                format!("of `{}` must serialize to a JSON object", Self::NAME),
            ));
        }
        Ok(Event::new(Self::NAME, data))
    }

    /// Reads the payload back from an event, checking its name.
    fn from_event(event: &Event) -> Result<Self> {
        if event.name != Self::NAME {
            return Err(Error::invalid_input(
                "name",
                format!("is `{}`, expected `{}`", event.name, Self::NAME),
            ));
        }
        let data = if event.data.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            event.data.clone()
        };
        serde_json::from_value(data).map_err(|e| {
            Error::invalid_input("data", format!("does not match `{}`: {e}", Self::NAME))
                .with_source(e)
        })
    }
}
