//! The realtime backend chosen from the environment.

use std::sync::Arc;

use infra_core::{Env, HealthCheck, Realtime, Result};

use crate::config::RealtimeConfig;
use crate::local::LocalRealtime;

/// The realtime backend and its health check, as picked by [`RealtimeConfig::from_env`].
#[derive(Clone)]
pub struct RealtimeService {
    realtime: Arc<dyn Realtime>,
    health: Arc<dyn HealthCheck>,
    local: Option<Arc<LocalRealtime>>,
    #[cfg(feature = "pusher")]
    pusher: Option<Arc<crate::PusherClient>>,
    backend: &'static str,
}

impl RealtimeService {
    /// Pusher when configured, else the in-process hub.
    pub fn from_env(env: &Env) -> Result<Self> {
        RealtimeService::from_config(RealtimeConfig::from_env(env)?)
    }

    /// Builds the backend `config` names.
    pub fn from_config(config: RealtimeConfig) -> Result<Self> {
        match config {
            RealtimeConfig::Local => {
                let hub = Arc::new(LocalRealtime::default());
                Ok(RealtimeService {
                    realtime: hub.clone(),
                    health: hub.clone(),
                    local: Some(hub),
                    #[cfg(feature = "pusher")]
                    pusher: None,
                    backend: "local",
                })
            }
            #[cfg(feature = "pusher")]
            RealtimeConfig::Pusher(config) => {
                let client = Arc::new(crate::PusherClient::new(config)?);
                Ok(RealtimeService {
                    realtime: client.clone(),
                    health: client.clone(),
                    local: None,
                    pusher: Some(client),
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

    /// Where events are triggered.
    pub fn realtime(&self) -> Arc<dyn Realtime> {
        self.realtime.clone()
    }

    /// The backend's health check.
    pub fn health(&self) -> Arc<dyn HealthCheck> {
        self.health.clone()
    }

    /// The in-process hub, when that is the backend (to subscribe to channels).
    pub fn local_hub(&self) -> Option<Arc<LocalRealtime>> {
        self.local.clone()
    }

    /// The Pusher client, when that is the backend: channel queries, user termination,
    /// trigger options, auth signing.
    #[cfg(feature = "pusher")]
    pub fn pusher(&self) -> Option<Arc<crate::PusherClient>> {
        self.pusher.clone()
    }

    /// `local` or `pusher`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}
