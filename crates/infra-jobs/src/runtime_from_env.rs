//! The jobs runtime on the backend the environment selects.

use std::sync::Arc;

use infra_core::{Env, EventLimits, Result};

use crate::config::JobsConfig;
use crate::memory_queue::MemoryQueue;
use crate::runtime::JobsRuntime;
use crate::worker_settings::WorkerSettings;

/// A database a PostgreSQL queue may share; nothing can be shared without the feature.
#[cfg(feature = "postgres")]
type SharedDatabase = infra_db::Database;
#[cfg(not(feature = "postgres"))]
type SharedDatabase = std::convert::Infallible;

impl JobsRuntime {
    /// The runtime over the backend the environment names (see [`JobsConfig::from_env`]),
    /// with the event limits (`INFRA_JOBS_MAX_*`) and worker settings (`INFRA_JOBS_*`) it
    /// sets. Register the app's functions, then [`start`](JobsRuntime::start) it.
    ///
    /// ```
    /// use infra_core::Env;
    /// use infra_jobs::JobsRuntime;
    ///
    /// // No INNGEST_* and no DATABASE_URL: the in-process queue.
    /// let jobs = JobsRuntime::from_env(&Env::empty()).unwrap();
    /// assert_eq!(jobs.backend(), "memory");
    /// // A backend that is not one of inngest, postgres, memory is refused, naming the variable.
    /// let err = JobsRuntime::from_env(&Env::from_pairs([("INFRA_JOBS_BACKEND", "redis")])).unwrap_err();
    /// assert_eq!(err.variable(), Some("INFRA_JOBS_BACKEND"));
    /// ```
    pub fn from_env(env: &Env) -> Result<Self> {
        let limits = EventLimits::from_env(env)?;
        let settings = WorkerSettings::from_env(env)?;
        JobsRuntime::from_config(JobsConfig::from_env(env)?, env, limits, settings)
    }

    /// Like [`JobsRuntime::from_env`], but a PostgreSQL queue runs on `db` (sharing its pool)
    /// instead of opening a pool of its own: for an app that already has the
    /// [`infra_db::Database`] `DATABASE_URL` names. Other backends ignore `db`.
    #[cfg(feature = "postgres")]
    pub fn from_env_on(env: &Env, db: &infra_db::Database) -> Result<Self> {
        let limits = EventLimits::from_env(env)?;
        let settings = WorkerSettings::from_env(env)?;
        JobsRuntime::on_backend(
            JobsConfig::from_env(env)?,
            env,
            limits,
            settings,
            Some(db.clone()),
        )
    }

    /// The runtime over the backend `config` names (PostgreSQL reads its pool settings from
    /// `env`).
    pub fn from_config(
        config: JobsConfig,
        env: &Env,
        limits: EventLimits,
        settings: WorkerSettings,
    ) -> Result<Self> {
        JobsRuntime::on_backend(config, env, limits, settings, None)
    }

    /// The runtime over the backend `config` names; a PostgreSQL queue on `db` when given,
    /// else on a pool of its own from `env`.
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    fn on_backend(
        config: JobsConfig,
        env: &Env,
        limits: EventLimits,
        settings: WorkerSettings,
        db: Option<SharedDatabase>,
    ) -> Result<Self> {
        Ok(match config {
            JobsConfig::Memory => {
                JobsRuntime::with_settings(Arc::new(MemoryQueue::new()), limits, settings)
            }
            #[cfg(feature = "postgres")]
            JobsConfig::Postgres => {
                let db = match db {
                    Some(db) => db,
                    None => infra_db::Database::from_env(env)?,
                };
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
        })
    }
}
