//! Server-wide settings: the apps, the connection timing, the proxies in front and the
//! cluster, from `PUSHER_*` / `INFRA_REALTIME_*` variables or an apps file.

use std::path::Path;
use std::time::Duration;

use infra_core::http_server::TrustedProxies;
use infra_core::{Env, Error, Result};

use super::app_config::{AppConfig, AppDefaults, read_apps_file};
use super::app_limits::AppLimits;
use super::cluster_config::ClusterConfig;
use super::webhook_filter::WebhookFilter;

/// The variable of [`AppConfig::subscription_count`] for every app an apps file does not set
/// it for.
const SUBSCRIPTION_COUNT_VAR: &str = "INFRA_REALTIME_SUBSCRIPTION_COUNT";
/// The variable of [`AppConfig::watchlist_events`] for every app an apps file does not set it
/// for.
const WATCHLIST_EVENTS_VAR: &str = "INFRA_REALTIME_WATCHLIST_EVENTS";

/// The variable of [`ServerConfig::write_timeout`].
const WRITE_TIMEOUT_VAR: &str = "INFRA_REALTIME_WRITE_TIMEOUT";
/// The variable of [`ServerConfig::webhook_retry_for`].
const WEBHOOK_RETRY_FOR_VAR: &str = "INFRA_REALTIME_WEBHOOK_RETRY_FOR";
/// Default of [`ServerConfig::webhook_retry_for`]: Pusher retries a webhook for 5 minutes.
pub const DEFAULT_WEBHOOK_RETRY_FOR: Duration = Duration::from_secs(300);
/// The variable of [`ServerConfig::subscription_count_interval`].
const SUBSCRIPTION_COUNT_INTERVAL_VAR: &str = "INFRA_REALTIME_SUBSCRIPTION_COUNT_INTERVAL";
/// Default of [`ServerConfig::subscription_count_interval`].
pub const DEFAULT_SUBSCRIPTION_COUNT_INTERVAL: Duration = Duration::from_secs(5);
/// Default of [`ServerConfig::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// How long a webhook batch the receiver does not take is retried (with back-off) before
    /// it is given up and its events counted as dropped.
    pub webhook_retry_for: Duration,
    /// The least time between two `pusher_internal:subscription_count` events (and webhooks)
    /// of one channel, for apps with [`AppConfig::subscription_count`] on: the first change is
    /// sent at once, the changes within this time after it as one count at its end.
    pub subscription_count_interval: Duration,
    /// How long one WebSocket write may take: a client that reads nothing for that long while
    /// the server has frames for it is disconnected (4100), as is one whose queue passes
    /// [`AppLimits::max_queued_bytes`].
    pub write_timeout: Duration,
    /// The proxies in front of the server (`INFRA_TRUSTED_PROXIES`): through them a
    /// connection's client address, which [`AppLimits::max_connections_per_ip`] counts, comes
    /// from `X-Forwarded-For`; otherwise it is the socket's peer.
    pub trusted_proxies: TrustedProxies,
    /// Other nodes to act as one with, over Redis; `None`: this process alone.
    pub cluster: Option<ClusterConfig>,
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
            webhook_retry_for: DEFAULT_WEBHOOK_RETRY_FOR,
            subscription_count_interval: DEFAULT_SUBSCRIPTION_COUNT_INTERVAL,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            trusted_proxies: TrustedProxies::None,
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

    /// Counts each connection under the client address these proxies forwarded.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Replaces the webhook leave delay.
    pub fn with_leave_delay(mut self, delay: Duration) -> Self {
        self.leave_delay = delay;
        self
    }

    /// Replaces how long an undelivered webhook batch is retried.
    pub fn with_webhook_retry_for(mut self, retry_for: Duration) -> Self {
        self.webhook_retry_for = retry_for;
        self
    }

    /// Replaces the least time between two subscription counts of one channel.
    pub fn with_subscription_count_interval(mut self, interval: Duration) -> Self {
        self.subscription_count_interval = interval;
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
    /// `INFRA_REALTIME_WRITE_TIMEOUT` sets the write timeout; `INFRA_TRUSTED_PROXIES` the
    /// proxies in front ([`TrustedProxies::from_env`]); `INFRA_REALTIME_REDIS_URL` or
    /// `INFRA_REALTIME_REDIS_CLUSTER_NODES` (and their companions, see
    /// [`ClusterConfig::from_env`]) joins the nodes sharing that Redis. `Ok(None)` when no app is configured.
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        let webhook = env.url("INFRA_REALTIME_WEBHOOK_URL")?;
        let defaults = app_defaults(env)?;
        let mut apps = if let Some(path) = env.optional("INFRA_REALTIME_APPS_FILE") {
            read_apps_file(Path::new(&path), &defaults)?
        } else if env.is_set("PUSHER_APP_ID") || env.is_set("PUSHER_KEY") {
            vec![
                AppConfig::new(
                    env.required("PUSHER_APP_ID")?,
                    env.required("PUSHER_KEY")?,
                    env.required_secret("PUSHER_SECRET")?.into_inner(),
                )
                .with_limits(defaults.limits)
                .with_webhook_filter(defaults.webhook_filter)
                .with_subscription_count(defaults.subscription_count)
                .with_watchlist_events(defaults.watchlist_events),
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
        let defaults = app_defaults(env)?;
        let webhook = env.url("INFRA_REALTIME_WEBHOOK_URL")?;
        let mut config = ServerConfig::embedded_default();
        for app in &mut config.apps {
            app.limits = defaults.limits.clone();
            app.webhook_url = webhook.clone();
            app.webhook_filter = defaults.webhook_filter.clone();
            app.subscription_count = defaults.subscription_count;
            app.watchlist_events = defaults.watchlist_events;
        }
        config.with_env_settings(env)
    }

    /// The server-wide settings of the environment: the write timeout, the webhook retry time,
    /// the trusted proxies and the cluster.
    fn with_env_settings(mut self, env: &Env) -> Result<Self> {
        if let Some(timeout) = env.duration(WRITE_TIMEOUT_VAR)? {
            if timeout.is_zero() {
                return Err(Error::config(WRITE_TIMEOUT_VAR, "must be more than 0"));
            }
            self.write_timeout = timeout;
        }
        if let Some(interval) = env.duration(SUBSCRIPTION_COUNT_INTERVAL_VAR)? {
            self.subscription_count_interval = interval;
        }
        if let Some(retry_for) = env.duration(WEBHOOK_RETRY_FOR_VAR)? {
            self.webhook_retry_for = retry_for;
        }
        self.trusted_proxies = TrustedProxies::from_env(env)?;
        Ok(self.with_cluster(ClusterConfig::from_env(env)?))
    }
}

/// The per-app settings the environment gives every app: limits, webhook filter, subscription
/// counts.
fn app_defaults(env: &Env) -> Result<AppDefaults> {
    Ok(AppDefaults {
        limits: AppLimits::from_env(env)?,
        webhook_filter: WebhookFilter::from_env(env)?,
        subscription_count: env.bool(SUBSCRIPTION_COUNT_VAR)?.unwrap_or(false),
        watchlist_events: env.bool(WATCHLIST_EVENTS_VAR)?.unwrap_or(false),
    })
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
            ("INFRA_TRUSTED_PROXIES", "1"),
            ("INFRA_REALTIME_SUBSCRIPTION_COUNT", "true"),
            ("INFRA_REALTIME_WEBHOOK_EVENTS", "client_events"),
        ]);
        let config = ServerConfig::from_env(&env).unwrap().unwrap();
        assert!(config.apps[0].subscription_count);
        assert_eq!(
            config.apps[0].webhook_filter,
            WebhookFilter::kinds([super::super::WebhookKind::ClientEvents])
        );
        assert_eq!(config.apps.len(), 1);
        assert_eq!(config.apps[0].id, "3");
        assert!(config.apps[0].webhook_url.is_some());
        assert_eq!(config.apps[0].limits.max_channels_per_connection, 12);
        assert_eq!(config.write_timeout, Duration::from_secs(3));
        assert_eq!(config.trusted_proxies, TrustedProxies::Hops(1));
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
        assert_eq!(plain.trusted_proxies, TrustedProxies::None);
        let proxies = Env::from_pairs([("INFRA_TRUSTED_PROXIES", "not a network")]);
        assert_eq!(
            ServerConfig::from_env_or_embedded(&proxies)
                .unwrap_err()
                .variable(),
            Some("INFRA_TRUSTED_PROXIES")
        );
    }
}
