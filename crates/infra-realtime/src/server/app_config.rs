//! One app a server hosts: its credentials, webhook and limits, and the apps file that
//! lists several (`INFRA_REALTIME_APPS_FILE`).

use std::fmt;
use std::path::Path;

use infra_core::{Error, Result, Secret};
use serde::Deserialize;

use super::app_limits::AppLimits;
use super::webhook_filter::WebhookFilter;

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
    /// Which webhooks go out (default: every kind, every channel).
    #[serde(default)]
    pub webhook_filter: WebhookFilter,
    /// Pusher's "subscription count" app setting: subscribers of non-presence channels receive
    /// `pusher_internal:subscription_count`, and the `subscription_count` webhook fires
    /// (default off, as on Pusher).
    #[serde(default)]
    pub subscription_count: bool,
    /// Watchlist events: users signed in with a `watchlist` in their `user_data` hear when
    /// watched users come online and go offline (default off: each sign-in then costs nothing
    /// more, on a cluster no Redis write).
    #[serde(default)]
    pub watchlist_events: bool,
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
            webhook_filter: WebhookFilter::default(),
            subscription_count: false,
            watchlist_events: false,
            limits: AppLimits::default(),
        }
    }

    /// Sends only the webhooks `filter` allows.
    pub fn with_webhook_filter(mut self, filter: WebhookFilter) -> Self {
        self.webhook_filter = filter;
        self
    }

    /// Turns watchlist events on or off.
    pub fn with_watchlist_events(mut self, on: bool) -> Self {
        self.watchlist_events = on;
        self
    }

    /// Turns Pusher's "subscription count" setting on or off.
    pub fn with_subscription_count(mut self, on: bool) -> Self {
        self.subscription_count = on;
        self
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
            .field("webhook_filter", &self.webhook_filter)
            .field("subscription_count", &self.subscription_count)
            .field("watchlist_events", &self.watchlist_events)
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
    webhook_filter: Option<WebhookFilter>,
    #[serde(default)]
    subscription_count: Option<bool>,
    #[serde(default)]
    watchlist_events: Option<bool>,
    #[serde(default)]
    limits: serde_json::Map<String, serde_json::Value>,
}

/// Reads and checks an apps file: `{"apps": [{"id", "key", "secret", "webhook_url"?,
/// "webhook_filter"?, "subscription_count"?, "watchlist_events"?, "limits"?}]}`; the limits an app does not name keep
/// their defaults, and so do its webhook filter and subscription count setting.
pub fn load_apps_file(path: &Path) -> Result<Vec<AppConfig>> {
    read_apps_file(path, &AppDefaults::default())
}

/// What an apps file's entries start from: the environment's settings for every app.
#[derive(Default)]
pub(super) struct AppDefaults {
    pub limits: AppLimits,
    pub webhook_filter: WebhookFilter,
    pub subscription_count: bool,
    pub watchlist_events: bool,
}

pub(super) fn read_apps_file(path: &Path, defaults: &AppDefaults) -> Result<Vec<AppConfig>> {
    const VAR: &str = "INFRA_REALTIME_APPS_FILE";
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(VAR, format_args!("cannot read {}: {e}", path.display())))?;
    parse_apps(&text, defaults)
        .map_err(|problem| Error::config(VAR, format_args!("{}: {problem}", path.display())))
}

fn parse_apps(text: &str, defaults: &AppDefaults) -> std::result::Result<Vec<AppConfig>, String> {
    let base = &defaults.limits;
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
        app.webhook_filter = entry
            .webhook_filter
            .unwrap_or_else(|| defaults.webhook_filter.clone());
        app.subscription_count = entry
            .subscription_count
            .unwrap_or(defaults.subscription_count);
        app.watchlist_events = entry.watchlist_events.unwrap_or(defaults.watchlist_events);
        apps.push(app);
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_file_rules() {
        let base = AppDefaults {
            limits: AppLimits {
                max_channels_per_connection: 9,
                ..AppLimits::default()
            },
            ..AppDefaults::default()
        };
        let apps = parse_apps(
            r#"{"apps":[{"id":"1","key":"a","secret":"s","limits":{"client_events":false}},
                        {"id":"2","key":"b","secret":"t","webhook_url":"http://h/x",
                         "subscription_count":true,
                         "webhook_filter":{"events":["presence"],"channel_prefixes":["presence-"]}}]}"#,
            &base,
        )
        .unwrap();
        assert!(!apps[0].limits.client_events);
        assert_eq!(apps[0].limits.max_connections, 10_000);
        assert_eq!(apps[0].limits.max_channels_per_connection, 9);
        assert!(apps[1].webhook_url.is_some());
        assert!(apps[1].subscription_count && !apps[0].subscription_count);
        assert_eq!(apps[0].webhook_filter, WebhookFilter::default());
        assert_eq!(apps[1].webhook_filter.channel_prefixes, ["presence-"]);
        let unknown_kind = r#"{"apps":[{"id":"1","key":"a","secret":"s",
            "webhook_filter":{"events":["members"]}}]}"#;
        assert!(
            parse_apps(unknown_kind, &base)
                .unwrap_err()
                .contains("unknown webhook kind")
        );
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
