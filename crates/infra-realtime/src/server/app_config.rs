//! One app a server hosts: its credentials, webhook and limits, and the apps file that
//! lists several (`INFRA_REALTIME_APPS_FILE`).

use std::fmt;
use std::path::Path;

use infra_core::{Error, Result, Secret};
use serde::Deserialize;

use super::app_limits::AppLimits;

/// One app: its credentials and limits.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AppConfig {
    /// The app id of the HTTP API's `/apps/{id}/…`.
    pub id: String,
    /// The public key clients connect with (`/app/{key}`).
    pub key: String,
    /// The secret signing API calls, channel authorizations and webhooks.
    #[serde(deserialize_with = "deserialize_secret")]
    pub secret: Secret<String>,
    /// Where webhooks go; none when absent.
    #[serde(default)]
    pub webhook_url: Option<url::Url>,
    /// Limits.
    #[serde(default)]
    pub limits: AppLimits,
}

fn deserialize_secret<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Secret<String>, D::Error> {
    String::deserialize(d).map(Secret::new)
}

impl AppConfig {
    /// An app with default limits and no webhook.
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        AppConfig {
            id: id.into(),
            key: key.into(),
            secret: Secret::new(secret.into()),
            webhook_url: None,
            limits: AppLimits::default(),
        }
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: AppLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sends webhooks to `url`.
    pub fn with_webhook_url(mut self, url: url::Url) -> Self {
        self.webhook_url = Some(url);
        self
    }
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &self.secret)
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(url::Url::as_str),
            )
            .field("limits", &self.limits)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsFile {
    apps: Vec<AppsFileEntry>,
}

/// One app of an apps file: its `limits` replace only the fields they name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsFileEntry {
    id: String,
    key: String,
    secret: String,
    #[serde(default)]
    webhook_url: Option<url::Url>,
    #[serde(default)]
    limits: serde_json::Map<String, serde_json::Value>,
}

/// Reads and checks an apps file: `{"apps": [{"id", "key", "secret", "webhook_url"?, "limits"?}]}`;
/// the limits an app does not name keep their defaults.
pub fn load_apps_file(path: &Path) -> Result<Vec<AppConfig>> {
    read_apps_file(path, &AppLimits::default())
}

pub(super) fn read_apps_file(path: &Path, limits: &AppLimits) -> Result<Vec<AppConfig>> {
    const VAR: &str = "INFRA_REALTIME_APPS_FILE";
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(VAR, format_args!("cannot read {}: {e}", path.display())))?;
    parse_apps(&text, limits)
        .map_err(|problem| Error::config(VAR, format_args!("{}: {problem}", path.display())))
}

fn parse_apps(text: &str, base: &AppLimits) -> std::result::Result<Vec<AppConfig>, String> {
    let file: AppsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.apps.is_empty() {
        return Err("lists no app".into());
    }
    let mut apps: Vec<AppConfig> = Vec::with_capacity(file.apps.len());
    for (i, entry) in file.apps.into_iter().enumerate() {
        if entry.id.is_empty() || entry.key.is_empty() || entry.secret.is_empty() {
            return Err(format!("app {i} needs a non-empty id, key and secret"));
        }
        let clash = apps
            .iter()
            .any(|other| other.id == entry.id || other.key == entry.key);
        if clash {
            return Err(format!("app {i} repeats the id or key of an earlier app"));
        }
        let limits = base
            .overridden_by(&entry.limits)
            .and_then(|limits| limits.check().map(|()| limits))
            .map_err(|problem| format!("app {i}: limits: {problem}"))?;
        let mut app = AppConfig::new(entry.id, entry.key, entry.secret).with_limits(limits);
        app.webhook_url = entry.webhook_url;
        apps.push(app);
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_file_rules() {
        let base = AppLimits {
            max_channels_per_connection: 9,
            ..AppLimits::default()
        };
        let apps = parse_apps(
            r#"{"apps":[{"id":"1","key":"a","secret":"s","limits":{"client_events":false}},
                        {"id":"2","key":"b","secret":"t","webhook_url":"http://h/x"}]}"#,
            &base,
        )
        .unwrap();
        assert!(!apps[0].limits.client_events);
        assert_eq!(apps[0].limits.max_connections, 10_000);
        assert_eq!(apps[0].limits.max_channels_per_connection, 9);
        assert!(apps[1].webhook_url.is_some());
        assert!(
            parse_apps(r#"{"apps":[]}"#, &base)
                .unwrap_err()
                .contains("no app")
        );
        let repeated =
            r#"{"apps":[{"id":"1","key":"a","secret":"s"},{"id":"1","key":"b","secret":"s"}]}"#;
        assert!(parse_apps(repeated, &base).unwrap_err().contains("repeats"));
        let extra = r#"{"apps":[{"id":"1","key":"a","secret":"s","extra":1}]}"#;
        assert!(parse_apps(extra, &base).is_err());
        let zero =
            r#"{"apps":[{"id":"1","key":"a","secret":"s","limits":{"send_buffer_frames":0}}]}"#;
        assert!(
            parse_apps(zero, &base)
                .unwrap_err()
                .contains("send_buffer_frames")
        );
        let err = load_apps_file(Path::new("/nonexistent/apps.json")).unwrap_err();
        assert_eq!(err.variable(), Some("INFRA_REALTIME_APPS_FILE"));
    }
}
