//! `Monitoring`: the reporter the environment selects.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infra_core::{
    Breadcrumb, Context, DynError, Env, Error, ErrorReporter, HealthCheck, Level, Probe, Result,
    User,
};

use crate::config::{MonitoringConfig, SinkTarget};
use crate::local_sink::LocalSink;
use crate::monitoring_metrics::MonitoringMetrics;
use crate::tracking::Tracking;

#[derive(Clone)]
pub(crate) enum Backend {
    Local(Arc<LocalSink>),
    #[cfg(feature = "sentry")]
    Sentry(Arc<crate::sentry_backend::SentryBackend>),
}

/// Error monitoring: Sentry when `SENTRY_DSN` is set, otherwise a local JSON-lines sink.
///
/// Cheap to clone; with Sentry, the last clone dropped flushes queued events (bounded by
/// two seconds). The service is an [`ErrorReporter`] and a [`HealthCheck`] itself;
/// [`reporter`](Monitoring::reporter) and [`health`](Monitoring::health) hand out the trait
/// objects, [`tracking`](Monitoring::tracking) the TypeScript module's `ErrorTracking` helpers.
///
/// ```
/// use infra_core::{Breadcrumb, Context, Env, ErrorReporter};
/// use infra_monitoring::Monitoring;
///
/// let log = std::env::temp_dir().join(format!("infra-doc-{}.jsonl", std::process::id()));
/// let env = Env::from_pairs([("INFRA_MONITORING_LOG_FILE", log.to_str().unwrap())]);
/// let monitoring = Monitoring::from_env(&env).unwrap();
/// monitoring.add_breadcrumb(Breadcrumb::new("invoice sent").category("billing"));
/// let err = std::io::Error::other("payment API refused");
/// monitoring.capture_error(&err, &Context::new());
/// let line = std::fs::read_to_string(&log).unwrap();
/// assert!(line.contains("payment API refused"));
/// # std::fs::remove_file(log).ok();
/// ```
#[derive(Clone)]
pub struct Monitoring {
    pub(crate) backend: Backend,
    pub(crate) config: Arc<MonitoringConfig>,
    metrics: Arc<MonitoringMetrics>,
}

impl Monitoring {
    /// Sentry when a DSN is set, else the local sink.
    pub fn from_env(env: &Env) -> Result<Self> {
        Monitoring::from_config(MonitoringConfig::from_env(env)?)
    }

    /// Initialises the backend `config` selects. With Sentry this installs the process-wide
    /// client (and the panic handler).
    pub fn from_config(config: MonitoringConfig) -> Result<Self> {
        let backend = match &config.dsn {
            None => {
                let sink = LocalSink::new(config.clone()).map_err(|e| {
                    let variable = match config.sink {
                        SinkTarget::File(_) => "INFRA_MONITORING_LOG_FILE",
                        SinkTarget::Stderr => "stderr",
                    };
                    Error::config(variable, format_args!("cannot be opened for writing: {e}"))
                })?;
                Backend::Local(Arc::new(sink))
            }
            #[cfg(feature = "sentry")]
            Some(_) => Backend::Sentry(Arc::new(crate::sentry_backend::SentryBackend::init(
                &config,
            )?)),
            #[cfg(not(feature = "sentry"))]
            Some(dsn) => {
                return Err(Error::config(
                    dsn.variable(),
                    "is set but infra-monitoring was built without its `sentry` feature",
                ));
            }
        };
        let metrics = Arc::new(MonitoringMetrics::new(backend_name(&backend)));
        Ok(Monitoring {
            backend,
            config: Arc::new(config),
            metrics,
        })
    }

    /// Reports through a Sentry client the app initialised itself (for example
    /// `sentry::init(sentry_options(&config)?)`, see [`sentry_options`](crate::sentry_options)),
    /// instead of installing one. Events go to whatever client the current hub has when they
    /// are captured; the health check probes that client's DSN and is unhealthy when no
    /// client is bound.
    #[cfg(feature = "sentry")]
    pub fn attach(config: MonitoringConfig) -> Result<Self> {
        Ok(Monitoring {
            backend: Backend::Sentry(Arc::new(crate::sentry_backend::SentryBackend::attach(
                &config,
            ))),
            config: Arc::new(config),
            metrics: Arc::new(MonitoringMetrics::new("sentry")),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &MonitoringConfig {
        &self.config
    }

    /// The reporter as a trait object (the service is one itself).
    pub fn reporter(&self) -> Arc<dyn ErrorReporter> {
        Arc::new(self.clone())
    }

    /// The health check as a trait object (the service is one itself).
    pub fn health(&self) -> Arc<dyn HealthCheck> {
        Arc::new(self.clone())
    }

    /// `sentry` or `local`.
    pub fn backend(&self) -> &'static str {
        backend_name(&self.backend)
    }

    /// Sends queued events, waiting at most `timeout`; `true` when everything was sent.
    pub fn flush(&self, timeout: Duration) -> bool {
        match &self.backend {
            // The sink writes and flushes each line as it is captured.
            Backend::Local(_) => {
                let _ = timeout;
                true
            }
            #[cfg(feature = "sentry")]
            Backend::Sentry(s) => s.flush(timeout),
        }
    }
}

impl Monitoring {
    /// Captures an error with tags, a fingerprint and a level (what [`ErrorTracking`]
    /// helpers use).
    ///
    /// [`ErrorTracking`]: crate::ErrorTracking
    pub fn capture_tracked(
        &self,
        error: &DynError,
        context: &Context,
        tracking: &Tracking,
    ) -> Option<String> {
        let id = match &self.backend {
            Backend::Local(sink) => sink.capture_error_with(error, context, tracking),
            #[cfg(feature = "sentry")]
            Backend::Sentry(s) => s.capture_error_with(error, context, tracking),
        };
        self.metrics.count_event(&id);
        Some(id)
    }
}

impl ErrorReporter for Monitoring {
    fn capture_error(&self, error: &DynError, context: &Context) -> Option<String> {
        self.capture_tracked(error, context, &Tracking::default())
    }

    fn capture_message(&self, message: &str, level: Level, context: &Context) -> Option<String> {
        let id = match &self.backend {
            Backend::Local(sink) => sink.capture(level, ("message", message.into()), context),
            #[cfg(feature = "sentry")]
            Backend::Sentry(s) => s.capture_message(message, level, context),
        };
        self.metrics.count_event(&id);
        Some(id)
    }

    fn add_breadcrumb(&self, breadcrumb: Breadcrumb) {
        match &self.backend {
            Backend::Local(sink) => sink.add_breadcrumb(breadcrumb),
            #[cfg(feature = "sentry")]
            Backend::Sentry(s) => s.add_breadcrumb(breadcrumb),
        }
    }

    fn set_user(&self, user: Option<User>) {
        match &self.backend {
            Backend::Local(sink) => sink.set_user(user),
            #[cfg(feature = "sentry")]
            Backend::Sentry(s) => s.set_user(user, self.config.send_emails),
        }
    }
}

#[async_trait]
impl HealthCheck for Monitoring {
    fn service(&self) -> &str {
        "monitoring"
    }

    fn backend(&self) -> &str {
        Monitoring::backend(self)
    }

    async fn probe(&self) -> Result<Probe> {
        match &self.backend {
            Backend::Local(_) => Ok(Probe::healthy(match &self.config.sink {
                SinkTarget::Stderr => "local sink: JSON lines on stderr".to_owned(),
                SinkTarget::File(path) => format!("local sink: JSON lines to {}", path.display()),
            })),
            #[cfg(feature = "sentry")]
            Backend::Sentry(s) => s.probe().await,
        }
    }

    /// No envelope: readiness must not post to Sentry for every caller. The DSN is checked
    /// by [`probe`](HealthCheck::probe) (`/api/test-infrastructure`).
    async fn ping(&self) -> Result<Probe> {
        match &self.backend {
            Backend::Local(_) => self.probe().await,
            #[cfg(feature = "sentry")]
            Backend::Sentry(_) => Ok(Probe::healthy(
                "Sentry client configured (not contacted by readiness)",
            )),
        }
    }
}

#[cfg(all(test, not(feature = "sentry")))]
mod tests {
    use super::*;

    #[test]
    fn a_dsn_without_the_sentry_feature_names_its_variable() {
        let env = Env::from_pairs([("NEXT_PUBLIC_SENTRY_DSN", "https://secretkey@h.io/1")]);
        let err = Monitoring::from_env(&env).err().expect("refused");
        assert_eq!(err.variable(), Some("NEXT_PUBLIC_SENTRY_DSN"));
        assert!(!err.to_string().contains("secretkey"), "{err}");
    }
}

/// `local` or `sentry`.
fn backend_name(backend: &Backend) -> &'static str {
    match backend {
        Backend::Local(_) => "local",
        #[cfg(feature = "sentry")]
        Backend::Sentry(_) => "sentry",
    }
}
