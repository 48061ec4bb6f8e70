//! The jobs backend chosen from the environment.

use std::sync::Arc;

use infra_core::{Env, EventLimits, EventSender, HealthCheck, Result};

use crate::config::JobsConfig;
use crate::memory_queue::MemoryQueue;
use crate::runtime::JobsRuntime;
use crate::worker_settings::WorkerSettings;

/// The jobs runtime over the backend [`JobsConfig::from_env`] picks. Register the app's
/// functions on [`Jobs::runtime`], then [`JobsRuntime::start`] it.
#[derive(Clone, Debug)]
pub struct Jobs {
    runtime: JobsRuntime,
}

impl Jobs {
    /// The backend the environment names (see [`JobsConfig::from_env`]).
    pub fn from_env(env: &Env) -> Result<Self> {
        let limits = EventLimits::from_env(env)?;
        let settings = WorkerSettings::from_env(env)?;
        Jobs::from_config(JobsConfig::from_env(env)?, env, limits, settings)
    }

    /// Builds the backend `config` names (PostgreSQL reads its pool settings from `env`).
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub fn from_config(
        config: JobsConfig,
        env: &Env,
        limits: EventLimits,
        settings: WorkerSettings,
    ) -> Result<Self> {
        let runtime = match config {
            JobsConfig::Memory => {
                JobsRuntime::with_settings(Arc::new(MemoryQueue::new()), limits, settings)
            }
            #[cfg(feature = "postgres")]
            JobsConfig::Postgres => {
                let db = infra_db::Database::from_env(env)?;
                JobsRuntime::with_settings(Arc::new(crate::PgQueue::new(db)), limits, settings)
            }
            #[cfg(not(feature = "postgres"))]
            JobsConfig::Postgres => {
                return Err(infra_core::Error::config(
                    "INFRA_JOBS_BACKEND",
                    "is `postgres` but infra-jobs was built without its `postgres` feature",
                ));
            }
            #[cfg(feature = "inngest")]
            JobsConfig::Inngest(config) => {
                let client = Arc::new(crate::InngestClient::new(config)?);
                JobsRuntime::forwarding(client.clone(), client, "inngest", limits)
            }
            #[cfg(not(feature = "inngest"))]
            JobsConfig::Inngest(_) => {
                return Err(infra_core::Error::config(
                    "INNGEST_EVENT_KEY",
                    "is set but infra-jobs was built without its `inngest` feature",
                ));
            }
        };
        Ok(Jobs { runtime })
    }

    /// The runtime: register functions, start workers, stats, dead letters.
    pub fn runtime(&self) -> &JobsRuntime {
        &self.runtime
    }

    /// Where events go.
    pub fn events(&self) -> Arc<dyn EventSender> {
        Arc::new(self.runtime.clone())
    }

    /// The backend's health check.
    pub fn health(&self) -> Arc<dyn HealthCheck> {
        Arc::new(self.runtime.clone())
    }

    /// `memory`, `postgres` or `inngest`.
    pub fn backend(&self) -> &'static str {
        self.runtime.backend()
    }
}
