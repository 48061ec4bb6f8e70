//! The events backend chosen from the environment.

use std::sync::Arc;

use infra_core::{Env, EventSender, HealthCheck, Result};

use crate::config::JobsConfig;
use crate::local::LocalEventBus;

/// The event sender and its health check, as picked by [`JobsConfig::from_env`].
#[derive(Clone)]
pub struct Jobs {
    events: Arc<dyn EventSender>,
    health: Arc<dyn HealthCheck>,
    local: Option<Arc<LocalEventBus>>,
    backend: &'static str,
}

impl Jobs {
    /// Inngest when configured, else the in-process bus.
    pub fn from_env(env: &Env) -> Result<Self> {
        Jobs::from_config(JobsConfig::from_env(env)?)
    }

    /// Builds the backend `config` names.
    pub fn from_config(config: JobsConfig) -> Result<Self> {
        match config {
            JobsConfig::Local => {
                let bus = Arc::new(LocalEventBus::default());
                Ok(Jobs {
                    events: bus.clone(),
                    health: bus.clone(),
                    local: Some(bus),
                    backend: "local",
                })
            }
            #[cfg(feature = "inngest")]
            JobsConfig::Inngest(config) => {
                let client = Arc::new(crate::InngestClient::new(config)?);
                Ok(Jobs {
                    events: client.clone(),
                    health: client,
                    local: None,
                    backend: "inngest",
                })
            }
            #[cfg(not(feature = "inngest"))]
            JobsConfig::Inngest(_) => Err(infra_core::Error::config(
                "INNGEST_EVENT_KEY",
                "is set but infra-jobs was built without its `inngest` feature",
            )),
        }
    }

    /// Where events go.
    pub fn events(&self) -> Arc<dyn EventSender> {
        self.events.clone()
    }

    /// The backend's health check.
    pub fn health(&self) -> Arc<dyn HealthCheck> {
        self.health.clone()
    }

    /// The in-process bus, when that is the backend (to subscribe to events).
    pub fn local_bus(&self) -> Option<Arc<LocalEventBus>> {
        self.local.clone()
    }

    /// `local` or `inngest`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}
