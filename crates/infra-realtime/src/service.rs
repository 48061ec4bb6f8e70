//! The realtime backend chosen from the environment.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use infra_core::{BatchEvent, ChannelName, Env, EventName, HealthCheck, Realtime, Result};

use crate::config::RealtimeConfig;

/// The realtime backend and its health check, as picked by [`RealtimeConfig::from_env`].
///
/// The service is a [`Realtime`] itself (`service.trigger(…)` goes to the backend);
/// [`realtime`](Self::realtime) and [`health`](Self::health) hand out the trait objects.
///
/// ```
/// # #[cfg(feature = "server")]
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use infra_core::{ChannelName, Env, EventName, Realtime};
/// use infra_realtime::RealtimeService;
///
/// // No PUSHER_* variables: the embedded Pusher-protocol server.
/// let realtime = RealtimeService::from_env(&Env::empty()).unwrap();
/// assert_eq!(realtime.backend(), "local");
/// realtime
///     .trigger(
///         &[ChannelName::new("private-user-42").unwrap()],
///         &EventName::new("task.created").unwrap(),
///         &serde_json::json!({ "title": "Call Ada" }),
///     )
///     .await
///     .unwrap();
/// // pusher-js connects to the server's router, mounted on the app's axum server.
/// let _router = realtime.server().unwrap().router();
/// # });
/// ```
#[derive(Clone)]
pub struct RealtimeService {
    realtime: Arc<dyn Realtime>,
    health: Arc<dyn HealthCheck>,
    #[cfg(feature = "server")]
    server: Option<crate::server::RealtimeServer>,
    #[cfg(feature = "pusher")]
    pusher: Option<Arc<crate::pusher_client::PusherClient>>,
    credentials: crate::credentials::AppCredentials,
    backend: &'static str,
}

impl RealtimeService {
    /// Pusher when configured, else the embedded Pusher-protocol server (its apps from
    /// `INFRA_REALTIME_APPS_FILE` when set).
    ///
    /// ```
    /// # #[cfg(feature = "pusher")] {
    /// use infra_core::Env;
    /// use infra_realtime::RealtimeService;
    ///
    /// let pusher = RealtimeService::from_env(&Env::from_pairs([
    ///     ("PUSHER_APP_ID", "1234"),
    ///     ("PUSHER_KEY", "app-key"),
    ///     ("PUSHER_SECRET", "app-secret"),
    ///     ("PUSHER_CLUSTER", "eu"),
    /// ]))
    /// .unwrap();
    /// assert_eq!(pusher.backend(), "pusher");
    /// assert_eq!(pusher.credentials().key, "app-key");
    /// # }
    /// ```
    pub fn from_env(env: &Env) -> Result<Self> {
        let config = RealtimeConfig::from_env(env)?;
        #[cfg(feature = "server")]
        if let RealtimeConfig::Local = config {
            let server_config = crate::server::ServerConfig::from_env_or_embedded(env)?;
            let mut service =
                RealtimeService::embedded(crate::server::RealtimeServer::new(server_config)?);
            service.credentials = service
                .credentials
                .with_webhook_tolerance(crate::webhook::webhook_tolerance_from_env(env)?);
            return Ok(service);
        }
        RealtimeService::from_config(config)
    }

    /// Builds the backend `config` names.
    pub fn from_config(config: RealtimeConfig) -> Result<Self> {
        match config {
            #[cfg(feature = "server")]
            RealtimeConfig::Local => Ok(RealtimeService::embedded(
                crate::server::RealtimeServer::new(crate::server::ServerConfig::embedded_default())?,
            )),
            #[cfg(not(feature = "server"))]
            RealtimeConfig::Local => Err(infra_core::Error::config(
                "PUSHER_APP_ID",
                "is not set and infra-realtime was built without its `server` feature \
                 (the embedded default)",
            )),
            #[cfg(feature = "pusher")]
            RealtimeConfig::Pusher(config) => {
                let credentials = crate::credentials::AppCredentials::from(&config);
                let client = Arc::new(crate::pusher_client::PusherClient::new(config)?);
                Ok(RealtimeService {
                    realtime: client.clone(),
                    health: client.clone(),
                    #[cfg(feature = "server")]
                    server: None,
                    pusher: Some(client),
                    credentials,
                    backend: "pusher",
                })
            }
            #[cfg(not(feature = "pusher"))]
            RealtimeConfig::Pusher(_) => Err(infra_core::Error::config(
                "PUSHER_APP_ID",
                "is set but infra-realtime was built without its `pusher` feature",
            )),
        }
    }

    /// The embedded server as the backend.
    #[cfg(feature = "server")]
    pub fn embedded(server: crate::server::RealtimeServer) -> Self {
        let app = server.app();
        let credentials = crate::credentials::AppCredentials::new(
            app.id.clone(),
            app.key.clone(),
            app.secret.expose().clone(),
        );
        RealtimeService {
            credentials,
            realtime: Arc::new(server.clone()),
            health: Arc::new(server.clone()),
            server: Some(server),
            #[cfg(feature = "pusher")]
            pusher: None,
            backend: "local",
        }
    }

    /// Where events are triggered.
    pub fn realtime(&self) -> Arc<dyn Realtime> {
        self.realtime.clone()
    }

    /// The backend's health check.
    pub fn health(&self) -> Arc<dyn HealthCheck> {
        self.health.clone()
    }

    /// The embedded server, when that is the backend: mount its
    /// [`router`](crate::server::RealtimeServer::router) on the app's axum server.
    #[cfg(feature = "server")]
    pub fn server(&self) -> Option<&crate::server::RealtimeServer> {
        self.server.as_ref()
    }

    /// The Pusher client, when that is the backend: channel queries, user termination,
    /// trigger options, auth signing.
    #[cfg(feature = "pusher")]
    pub fn pusher(&self) -> Option<Arc<crate::pusher_client::PusherClient>> {
        self.pusher.clone()
    }

    /// The app's credentials (Pusher's, or the embedded server's first app): what the auth
    /// endpoint signs channel authorizations with, and the key pusher-js connects with.
    pub fn credentials(&self) -> &crate::credentials::AppCredentials {
        &self.credentials
    }

    /// `local` (the embedded server) or `pusher`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}

/// The future every [`Realtime`] method returns (what `#[async_trait]` generates).
type RealtimeFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

// Written out rather than with `#[async_trait]`: each call hands back the backend's own
// future, so going through the service costs no allocation of its own.
impl Realtime for RealtimeService {
    fn trigger<'s, 'c, 'e, 'd, 'f>(
        &'s self,
        channels: &'c [ChannelName],
        event: &'e EventName,
        data: &'d serde_json::Value,
    ) -> RealtimeFuture<'f>
    where
        's: 'f,
        'c: 'f,
        'e: 'f,
        'd: 'f,
        Self: 'f,
    {
        self.realtime.as_ref().trigger(channels, event, data)
    }

    fn trigger_batch<'s, 'b, 'f>(&'s self, batch: &'b [BatchEvent]) -> RealtimeFuture<'f>
    where
        's: 'f,
        'b: 'f,
        Self: 'f,
    {
        self.realtime.as_ref().trigger_batch(batch)
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_embedded_backend_takes_the_webhook_tolerance_too() {
        let env = Env::from_pairs([("PUSHER_WEBHOOK_TOLERANCE", "2m")]);
        let service = RealtimeService::from_env(&env).unwrap();
        assert_eq!(service.backend(), "local");
        assert_eq!(
            service.credentials().webhook_tolerance,
            Duration::from_secs(120)
        );
        let env = Env::from_pairs([("PUSHER_WEBHOOK_TOLERANCE", "later")]);
        let err = RealtimeService::from_env(&env).err().unwrap();
        assert_eq!(err.variable(), Some("PUSHER_WEBHOOK_TOLERANCE"));
    }
}
