//! The apps a server hosts and the server's timing, from `PUSHER_*` / `INFRA_REALTIME_*`
//! variables or an apps file.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use infra_core::{Env, Error, Result, Secret};
use serde::Deserialize;

use super::app_limits::AppLimits;
use super::cluster_config::ClusterConfig;

/// The variable of [`ServerConfig::write_timeout`].
const WRITE_TIMEOUT_VAR: &str = "INFRA_REALTIME_WRITE_TIMEOUT";
/// Default of [`ServerConfig::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// How long one WebSocket write may take: a client that reads nothing for that long while
    /// the server has frames for it is disconnected (4100), as is one whose queue passes
    /// [`AppLimits::max_queued_bytes`].
    pub write_timeout: Duration,
    /// Other nodes to act as one with, over Redis; `None`: this process alone.
    pub cluster: Option<ClusterConfig>,
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

impl ServerConfig {
    /// A server hosting `apps` with Pusher's timing (120 s activity timeout, 30 s for the
    /// pong) and a 10 s write timeout.
    pub fn new(apps: Vec<AppConfig>) -> Self {
        ServerConfig {
            apps,
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            leave_delay: Duration::from_secs(3),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
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

    /// Replaces the write timeout (at least 1 ms).
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The apps from `INFRA_REALTIME_APPS_FILE` when set, else the one app of
    /// `PUSHER_APP_ID` / `PUSHER_KEY` / `PUSHER_SECRET`; `INFRA_REALTIME_WEBHOOK_URL` sets the
    /// webhook of an app that names none; the `INFRA_REALTIME_MAX_*` variables set every
    /// app's limits ([`AppLimits::from_env`]) but those its apps-file entry names;
    /// `INFRA_REALTIME_WRITE_TIMEOUT` sets the write timeout; `INFRA_REALTIME_REDIS_URL`
    /// (and its companions, see [`ClusterConfig::from_env`]) joins the nodes sharing that
    /// Redis. `Ok(None)` when no app is configured.
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        let webhook = env.url("INFRA_REALTIME_WEBHOOK_URL")?;
        let limits = AppLimits::from_env(env)?;
        let mut apps = if let Some(path) = env.optional("INFRA_REALTIME_APPS_FILE") {
            read_apps_file(Path::new(&path), &limits)?
        } else if env.is_set("PUSHER_APP_ID") || env.is_set("PUSHER_KEY") {
            vec![
                AppConfig::new(
                    env.required("PUSHER_APP_ID")?,
                    env.required("PUSHER_KEY")?,
                    env.required_secret("PUSHER_SECRET")?.into_inner(),
                )
                .with_limits(limits),
            ]
        } else {
            return Ok(None);
        };
        for app in &mut apps {
            if app.webhook_url.is_none() {
                app.webhook_url = webhook.clone();
            }
        }
        ServerConfig::new(apps).with_env_settings(env).map(Some)
    }

    /// What [`from_env`](Self::from_env) finds, else the
    /// [`embedded_default`](Self::embedded_default) app with the environment's limits,
    /// webhook URL, write timeout and cluster: the server an app embeds when Pusher is not
    /// configured.
    pub fn from_env_or_embedded(env: &Env) -> Result<Self> {
        if let Some(config) = ServerConfig::from_env(env)? {
            return Ok(config);
        }
        let limits = AppLimits::from_env(env)?;
        let webhook = env.url("INFRA_REALTIME_WEBHOOK_URL")?;
        let mut config = ServerConfig::embedded_default();
        for app in &mut config.apps {
            app.limits = limits.clone();
            app.webhook_url = webhook.clone();
        }
        config.with_env_settings(env)
    }

    /// The server-wide settings of the environment: the write timeout and the cluster.
    fn with_env_settings(mut self, env: &Env) -> Result<Self> {
        if let Some(timeout) = env.duration(WRITE_TIMEOUT_VAR)? {
            if timeout.is_zero() {
                return Err(Error::config(WRITE_TIMEOUT_VAR, "must be more than 0"));
            }
            self.write_timeout = timeout;
        }
        Ok(self.with_cluster(ClusterConfig::from_env(env)?))
    }
}

/// Reads and checks an apps file: `{"apps": [{"id", "key", "secret", "webhook_url"?, "limits"?}]}`;
/// the limits an app does not name keep their defaults.
pub fn load_apps_file(path: &Path) -> Result<Vec<AppConfig>> {
    read_apps_file(path, &AppLimits::default())
}

fn read_apps_file(path: &Path, limits: &AppLimits) -> Result<Vec<AppConfig>> {
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
    fn one_app_from_pusher_variables() {
        let env = Env::from_pairs([
            ("PUSHER_APP_ID", "3"),
            ("PUSHER_KEY", "k"),
            ("PUSHER_SECRET", "hush"),
            ("INFRA_REALTIME_WEBHOOK_URL", "http://127.0.0.1:9/hooks"),
            ("INFRA_REALTIME_MAX_CHANNELS_PER_CONNECTION", "12"),
            ("INFRA_REALTIME_WRITE_TIMEOUT", "3s"),
        ]);
        let config = ServerConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].id, "3");
        assert!(config.apps[0].webhook_url.is_some());
        assert_eq!(config.apps[0].limits.max_channels_per_connection, 12);
        assert_eq!(config.write_timeout, Duration::from_secs(3));
        assert!(!format!("{config:?}").contains("hush"));
        assert!(ServerConfig::from_env(&Env::empty()).unwrap().is_none());
        let partial = Env::from_pairs([("PUSHER_APP_ID", "3"), ("PUSHER_KEY", "k")]);
        assert_eq!(
            ServerConfig::from_env(&partial).unwrap_err().variable(),
            Some("PUSHER_SECRET")
        );
        let zero = Env::from_pairs([(WRITE_TIMEOUT_VAR, "0s")]);
        assert_eq!(
            ServerConfig::from_env_or_embedded(&zero)
                .unwrap_err()
                .variable(),
            Some(WRITE_TIMEOUT_VAR)
        );
    }

    #[test]
    fn the_embedded_default_takes_the_environment_s_settings() {
        let env = Env::from_pairs([
            ("INFRA_REALTIME_WEBHOOK_URL", "http://127.0.0.1:9/hooks"),
            ("INFRA_REALTIME_MAX_SUBSCRIBES_PER_SECOND", "40"),
            ("INFRA_REALTIME_WRITE_TIMEOUT", "250ms"),
        ]);
        let config = ServerConfig::from_env_or_embedded(&env).unwrap();
        assert_eq!(config.apps[0].key, "app-key");
        assert_eq!(config.apps[0].limits.max_subscribes_per_second, 40);
        assert!(config.apps[0].webhook_url.is_some());
        assert_eq!(config.write_timeout, Duration::from_millis(250));
        let plain = ServerConfig::from_env_or_embedded(&Env::empty()).unwrap();
        assert_eq!(plain.apps[0].limits, AppLimits::default());
        assert_eq!(plain.write_timeout, DEFAULT_WRITE_TIMEOUT);
    }

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
