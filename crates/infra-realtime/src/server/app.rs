//! The apps a server hosts and their limits, from `PUSHER_*` variables or an apps file.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use infra_core::{Env, Error, Result, Secret};
use serde::Deserialize;

use super::cluster_config::ClusterConfig;

/// Per-app limits. Defaults follow Pusher's published limits where it has them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AppLimits {
    /// Concurrent WebSocket connections; one more is closed with 4100.
    pub max_connections: usize,
    /// Bytes of one event's `data` (HTTP API and client events); 413 / error beyond.
    pub max_payload_bytes: usize,
    /// Members of one presence channel.
    pub max_presence_members: usize,
    /// Bytes of one member's `user_info` JSON.
    pub max_presence_user_info_bytes: usize,
    /// Whether sockets may send `client-` events.
    pub client_events: bool,
    /// Client events one connection may send per second (4301 beyond).
    pub client_events_per_second: u32,
    /// Frames queued for one client before it counts as too slow and is disconnected.
    pub send_buffer_frames: usize,
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits {
            max_connections: 10_000,
            max_payload_bytes: crate::MAX_DATA_BYTES,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            client_events: true,
            client_events_per_second: 10,
            send_buffer_frames: 256,
        }
    }
}

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

/// Server-wide settings: the apps and the connection timing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The apps, looked up by key (WebSocket) or id (HTTP API).
    pub apps: Vec<AppConfig>,
    /// Seconds of silence after which the server pings a client (sent to clients as
    /// `activity_timeout`).
    pub activity_timeout: Duration,
    /// How long a pinged client has to answer before it is closed with 4201.
    pub pong_timeout: Duration,
    /// How long `channel_vacated` / `member_removed` webhooks wait for a quick return.
    pub leave_delay: Duration,
    /// Other nodes to act as one with, over Redis; `None`: this process alone.
    pub cluster: Option<ClusterConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsFile {
    apps: Vec<AppConfig>,
}

impl ServerConfig {
    /// A server hosting `apps` with Pusher's timing (120 s activity timeout, 30 s for the pong).
    pub fn new(apps: Vec<AppConfig>) -> Self {
        ServerConfig {
            apps,
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            leave_delay: Duration::from_secs(3),
            cluster: None,
        }
    }

    /// The embedded default when nothing is configured: one app `app` / key `app-key` with a
    /// secret drawn at random for this process (sign channel authorizations through the
    /// server's [`app`](super::RealtimeServer::app) config).
    pub fn embedded_default() -> Self {
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        ServerConfig::new(vec![AppConfig::new("app", "app-key", secret)])
    }

    /// Replaces the activity and pong timeouts.
    pub fn with_timeouts(mut self, activity: Duration, pong: Duration) -> Self {
        self.activity_timeout = activity.max(Duration::from_secs(1));
        self.pong_timeout = pong;
        self
    }

    /// Shares the channels with the other nodes of `cluster` (`None`: this process alone).
    pub fn with_cluster(mut self, cluster: Option<ClusterConfig>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Replaces the webhook leave delay.
    pub fn with_leave_delay(mut self, delay: Duration) -> Self {
        self.leave_delay = delay;
        self
    }

    /// The apps from `INFRA_REALTIME_APPS_FILE` when set, else the one app of
    /// `PUSHER_APP_ID` / `PUSHER_KEY` / `PUSHER_SECRET`; `INFRA_REALTIME_WEBHOOK_URL` sets the
    /// webhook of an app that names none; `INFRA_REALTIME_REDIS_URL` (and its companions, see
    /// [`ClusterConfig::from_env`]) joins the nodes sharing that Redis. `Ok(None)` when no
    /// app is configured.
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        let webhook = env.url("INFRA_REALTIME_WEBHOOK_URL")?;
        let mut apps = if let Some(path) = env.optional("INFRA_REALTIME_APPS_FILE") {
            load_apps_file(Path::new(&path))?
        } else if env.is_set("PUSHER_APP_ID") || env.is_set("PUSHER_KEY") {
            vec![AppConfig::new(
                env.required("PUSHER_APP_ID")?,
                env.required("PUSHER_KEY")?,
                env.required_secret("PUSHER_SECRET")?.into_inner(),
            )]
        } else {
            return Ok(None);
        };
        for app in &mut apps {
            if app.webhook_url.is_none() {
                app.webhook_url = webhook.clone();
            }
        }
        Ok(Some(
            ServerConfig::new(apps).with_cluster(ClusterConfig::from_env(env)?),
        ))
    }
}

/// Reads and checks an apps file: `{"apps": [{"id", "key", "secret", "webhook_url"?, "limits"?}]}`.
pub fn load_apps_file(path: &Path) -> Result<Vec<AppConfig>> {
    const VAR: &str = "INFRA_REALTIME_APPS_FILE";
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(VAR, format_args!("cannot read {}: {e}", path.display())))?;
    parse_apps(&text)
        .map_err(|problem| Error::config(VAR, format_args!("{}: {problem}", path.display())))
}

fn parse_apps(text: &str) -> std::result::Result<Vec<AppConfig>, String> {
    let file: AppsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.apps.is_empty() {
        return Err("lists no app".into());
    }
    for (i, app) in file.apps.iter().enumerate() {
        if app.id.is_empty() || app.key.is_empty() || app.secret.expose().is_empty() {
            return Err(format!("app {i} needs a non-empty id, key and secret"));
        }
        let clash = file.apps[..i]
            .iter()
            .any(|other| other.id == app.id || other.key == app.key);
        if clash {
            return Err(format!("app {i} repeats the id or key of an earlier app"));
        }
        if app.limits.send_buffer_frames == 0 || app.limits.max_connections == 0 {
            return Err(format!(
                "app {i}: send_buffer_frames and max_connections must be at least 1"
            ));
        }
    }
    Ok(file.apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_app_from_pusher_variables() {
        let env = Env::from_pairs([
            ("PUSHER_APP_ID", "3"),
            ("PUSHER_KEY", "k"),
            ("PUSHER_SECRET", "hush"),
            ("INFRA_REALTIME_WEBHOOK_URL", "http://127.0.0.1:9/hooks"),
        ]);
        let config = ServerConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].id, "3");
        assert!(config.apps[0].webhook_url.is_some());
        assert!(!format!("{config:?}").contains("hush"));
        assert!(ServerConfig::from_env(&Env::empty()).unwrap().is_none());
        let partial = Env::from_pairs([("PUSHER_APP_ID", "3"), ("PUSHER_KEY", "k")]);
        assert_eq!(
            ServerConfig::from_env(&partial).unwrap_err().variable(),
            Some("PUSHER_SECRET")
        );
    }

    #[test]
    fn apps_file_rules() {
        let apps = parse_apps(
            r#"{"apps":[{"id":"1","key":"a","secret":"s","limits":{"client_events":false}},
                        {"id":"2","key":"b","secret":"t","webhook_url":"http://h/x"}]}"#,
        )
        .unwrap();
        assert!(!apps[0].limits.client_events);
        assert_eq!(apps[0].limits.max_connections, 10_000);
        assert!(apps[1].webhook_url.is_some());
        assert!(parse_apps(r#"{"apps":[]}"#).unwrap_err().contains("no app"));
        assert!(
            parse_apps(
                r#"{"apps":[{"id":"1","key":"a","secret":"s"},{"id":"1","key":"b","secret":"s"}]}"#
            )
            .unwrap_err()
            .contains("repeats")
        );
        assert!(parse_apps(r#"{"apps":[{"id":"1","key":"a","secret":"s","extra":1}]}"#).is_err());
        let err = load_apps_file(Path::new("/nonexistent/apps.json")).unwrap_err();
        assert_eq!(err.variable(), Some("INFRA_REALTIME_APPS_FILE"));
    }
}
