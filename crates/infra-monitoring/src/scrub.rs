//! Removes secrets from everything an event carries, before it leaves the process.

use std::borrow::Cow;

use serde_json::Value;

/// Replaces what was removed.
pub const REDACTED: &str = "[redacted]";

/// Keys whose values are secrets, matched case-insensitively as substrings.
const SECRET_KEYS: [&str; 11] = [
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "dsn",
    "private_key",
    "credential",
];

/// Path segments whose next segment is a secret: `/e/{event_key}`, the Inngest-compatible
/// ingestion route, carries its event key in the path.
const SECRET_FOLLOWS_SEGMENTS: [&str; 1] = ["e"];

/// Redacts the secret segments of a path (or of a URL or text holding one):
/// `/e/abc123` → `/e/[redacted]`. Route templates (`/e/{event_key}`) are left as they are.
pub fn scrub_path(path: &str) -> Cow<'_, str> {
    if !SECRET_FOLLOWS_SEGMENTS
        .iter()
        .any(|marker| path.contains(&format!("/{marker}/")))
    {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut secret_next = false;
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let is_template = segment.starts_with('{') && segment.ends_with('}');
        if secret_next && !segment.is_empty() && !is_template {
            out.push_str(REDACTED);
        } else {
            out.push_str(segment);
        }
        secret_next = SECRET_FOLLOWS_SEGMENTS.contains(&segment);
    }
    Cow::Owned(out)
}

/// Whether a key names a secret (`password`, `X-Api-Key`, `session_token`, `DATABASE_DSN`…).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    SECRET_KEYS.iter().any(|s| key.contains(s)) || key == "key" || key.ends_with("_key")
}

/// Redacts secrets that show in a free-text value: bearer/basic credentials and passwords
/// inside connection strings (`postgres://user:pw@host`).
pub fn scrub_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&scrub_word(word));
    }
    // `Bearer abc` spans two words: hide the word after the scheme.
    let mut words: Vec<String> = out.split(' ').map(str::to_owned).collect();
    for i in 0..words.len().saturating_sub(1) {
        let scheme = words[i]
            .trim_start_matches(['"', '\''])
            .to_ascii_lowercase();
        if scheme == "bearer" || scheme == "basic" || scheme == "token" {
            words[i + 1] = REDACTED.into();
        }
    }
    words.join(" ")
}

fn scrub_word(word: &str) -> String {
    let path_scrubbed = scrub_path(word);
    let word = path_scrubbed.as_ref();
    // scheme://user:password@host → scheme://user:[redacted]@host
    if let Some(scheme_end) = word.find("://") {
        let rest = &word[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:{REDACTED}{}",
                    &word[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
    }
    // key=value pairs such as `password=hunter2`
    if let Some((k, _)) = word.split_once('=').filter(|(k, _)| is_secret_key(k)) {
        return format!("{k}={REDACTED}");
    }
    word.to_owned()
}

/// Scrubs a JSON value in place: secret-named keys lose their values, strings lose embedded
/// credentials.
pub fn scrub_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) {
                    *v = Value::String(REDACTED.into());
                } else {
                    scrub_value(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::String(s) => {
            let cleaned = scrub_text(s);
            if cleaned != *s {
                *s = cleaned;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_texts() {
        for key in [
            "password",
            "Authorization",
            "X-Api-Key",
            "session_token",
            "SENTRY_DSN",
            "cookie",
            "stripe_key",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["user_id", "keyboard_layout", "route", "monkey"] {
            assert!(!is_secret_key(key), "{key}");
        }
        assert_eq!(
            scrub_text("auth: Bearer abc.def"),
            "auth: Bearer [redacted]"
        );
        assert_eq!(
            scrub_text("connect postgres://app:hunter2@db:5432/app failed"),
            "connect postgres://app:[redacted]@db:5432/app failed"
        );
        assert_eq!(
            scrub_text("retry with password=hunter2"),
            "retry with password=[redacted]"
        );
        assert_eq!(scrub_text("nothing to see"), "nothing to see");
    }

    #[test]
    fn secret_path_segments() {
        assert_eq!(scrub_path("/e/abc123"), "/e/[redacted]");
        assert_eq!(scrub_path("/e/{event_key}"), "/e/{event_key}");
        assert_eq!(scrub_path("/api/inngest"), "/api/inngest");
        assert_eq!(
            scrub_path("/hooks/e/k1/e/k2"),
            "/hooks/e/[redacted]/e/[redacted]"
        );
        assert_eq!(
            scrub_text("POST https://app.example.com/e/k-123?x=1 failed"),
            "POST https://app.example.com/e/[redacted] failed"
        );
        assert_eq!(scrub_text("see /e/"), "see /e/");
    }

    #[test]
    fn nested_values() {
        let mut v = json!({
            "user": {"id": 1, "password": "p"},
            "headers": [{"Authorization": "Bearer t"}],
            "note": "redis://:pw@cache:6379",
            "count": 3
        });
        scrub_value(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("\"p\"") && !text.contains("Bearer t") && !text.contains(":pw@"),
            "{text}"
        );
        assert_eq!(v["count"], 3);
        assert_eq!(v["user"]["id"], 1);
    }
}
