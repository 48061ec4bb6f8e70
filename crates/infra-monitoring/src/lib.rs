//! Skeleton: filled in by the infra-monitoring issue.

use async_trait::async_trait;
use infra_core::{Breadcrumb, Context, Env, Error, ErrorReporter, HealthCheck, Level, Probe, Result, User};

/// Error monitoring: Sentry when `SENTRY_DSN` is set, otherwise a local JSON-lines sink.
#[derive(Clone)]
pub struct Monitoring {}

impl Monitoring {
    /// Initialises monitoring from the environment.
    pub fn from_env(_env: &Env) -> Result<Self> {
        Err(Error::backend("infra-monitoring is not built yet"))
    }
}

impl ErrorReporter for Monitoring {
    fn capture_error(&self, _error: &(dyn std::error::Error + Send + Sync + 'static), _context: &Context) -> Option<String> {
        None
    }
    fn capture_message(&self, _message: &str, _level: Level, _context: &Context) -> Option<String> {
        None
    }
    fn add_breadcrumb(&self, _breadcrumb: Breadcrumb) {}
    fn set_user(&self, _user: Option<User>) {}
}

#[async_trait]
impl HealthCheck for Monitoring {
    fn service(&self) -> &str {
        "monitoring"
    }
    fn backend(&self) -> &str {
        "none"
    }
    async fn probe(&self) -> Result<Probe> {
        Err(Error::backend("infra-monitoring is not built yet"))
    }
}
