//! Keys computed from an event: concurrency, idempotency and debounce keys.

use infra_core::{Error, Event, Result};
use serde_json::Value;

/// A key read from event fields, such as `event.data.userId` or `userId` + `invoiceId`.
///
/// Each path is `event.`-prefixed and dot-separated, as Inngest writes its key expressions;
/// the key is the fields' values joined with `:`. An event lacking a field has no key (the
/// limit or deduplication then does not apply to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    paths: Vec<String>,
}

impl EventKey {
    /// A key over one field path, such as `event.data.userId`.
    pub fn field(path: &str) -> Result<Self> {
        EventKey::fields([path])
    }

    /// A key over several field paths, joined in order.
    pub fn fields<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let paths: Vec<String> = paths.into_iter().map(str::to_owned).collect();
        if paths.is_empty() {
            return Err(Error::invalid_input("key", "needs at least one field path"));
        }
        for path in &paths {
            let rest = path.strip_prefix("event.").ok_or_else(|| {
                Error::invalid_input("key", format!("path `{path}` must start with `event.`"))
            })?;
            if rest.split('.').any(str::is_empty) {
                return Err(Error::invalid_input(
                    "key",
                    format!("path `{path}` has an empty segment"),
                ));
            }
        }
        Ok(EventKey { paths })
    }

    /// The field paths.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The key of `event`, or `None` when a field is missing or null.
    pub fn evaluate(&self, event: &Event) -> Option<String> {
        let mut parts = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            let mut segments = path["event.".len()..].split('.');
            let mut value = match segments.next()? {
                "name" => Value::String(event.name.clone()),
                "id" => Value::String(event.id.clone()?),
                "data" => event.data.clone(),
                "user" => event.user.clone()?,
                _ => return None,
            };
            for segment in segments {
                value = value.get(segment)?.clone();
            }
            parts.push(match value {
                Value::Null => return None,
                Value::String(s) => s,
                other => other.to_string(),
            });
        }
        Some(parts.join(":"))
    }

    /// The key as an Inngest (CEL) expression: `event.data.a + ":" + event.data.b`.
    pub fn to_expression(&self) -> String {
        self.paths.join(" + \":\" + ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_joins_fields() {
        let key = EventKey::fields(["event.data.userId", "event.data.invoiceId"]).unwrap();
        let event = Event::new("x", json!({ "userId": "u1", "invoiceId": 7 }));
        assert_eq!(key.evaluate(&event).as_deref(), Some("u1:7"));
        assert_eq!(
            key.to_expression(),
            "event.data.userId + \":\" + event.data.invoiceId"
        );
        assert_eq!(
            key.evaluate(&Event::new("x", json!({ "userId": "u1" }))),
            None
        );
    }

    #[test]
    fn refuses_bad_paths() {
        assert_eq!(
            EventKey::field("data.userId").unwrap_err().field(),
            Some("key")
        );
        assert!(EventKey::field("event..x").is_err());
        assert!(EventKey::fields([]).is_err());
    }
}
