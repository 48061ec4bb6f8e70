//! Health checks with a hard deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;

use crate::duration::format_duration;
use crate::error::Result;

/// How long a check may take unless its backend says otherwise.
pub const DEFAULT_HEALTH_DEADLINE: Duration = Duration::from_secs(5);

/// The outcome of one health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The service answered correctly.
    Healthy,
    /// The service works, with a caveat (a fallback in use, a replica down).
    Degraded,
    /// The service failed or did not answer within the deadline.
    Unhealthy,
    /// The service is not configured in this environment.
    NotConfigured,
}

impl HealthStatus {
    /// `true` for Healthy and Degraded.
    pub fn is_ok(self) -> bool {
        matches!(self, HealthStatus::Healthy | HealthStatus::Degraded)
    }

    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::NotConfigured => "not_configured",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The service: `database`, `cache`, `jobs`, `realtime`, `monitoring`.
    pub service: String,
    /// The backend behind it: `postgres`, `redis`, `memory`, `inngest`, …
    pub backend: String,
    /// The verdict.
    pub status: HealthStatus,
    /// How long the check took.
    #[serde(rename = "latency_ms", serialize_with = "crate::serde_millis")]
    pub latency: Duration,
    /// What the check saw: versions, pool state, or why it failed. Never a secret.
    pub detail: String,
}

impl HealthReport {
    /// A report for a service that is not configured.
    pub fn not_configured(service: impl Into<String>, detail: impl Into<String>) -> Self {
        HealthReport {
            service: service.into(),
            backend: "none".into(),
            status: HealthStatus::NotConfigured,
            latency: Duration::ZERO,
            detail: detail.into(),
        }
    }

    /// Whether the service is usable (Healthy or Degraded).
    pub fn is_ok(&self) -> bool {
        self.status.is_ok()
    }
}

/// What a successful probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Healthy or Degraded.
    pub status: HealthStatus,
    /// Versions, pool state, memory: whatever helps an operator.
    pub detail: String,
}

impl Probe {
    /// A healthy probe.
    pub fn healthy(detail: impl Into<String>) -> Self {
        Probe {
            status: HealthStatus::Healthy,
            detail: detail.into(),
        }
    }

    /// A probe that works with a caveat.
    pub fn degraded(detail: impl Into<String>) -> Self {
        Probe {
            status: HealthStatus::Degraded,
            detail: detail.into(),
        }
    }
}

/// A service that can say whether it works.
///
/// Implementors write [`probe`](HealthCheck::probe), the end-to-end check (a write and read
/// back, a probe job, a call to a provider's API), and may write [`ping`](HealthCheck::ping),
/// a cheap one for readiness endpoints that anyone may call. Callers use
/// [`check`](HealthCheck::check) and [`check_ready`](HealthCheck::check_ready), which always
/// end within [`deadline`](HealthCheck::deadline): a backend that hangs reports Unhealthy with
/// "timed out after …".
///
/// ```
/// use async_trait::async_trait;
/// use infra_core::{HealthCheck, HealthStatus, Probe, Result};
///
/// struct Always;
///
/// #[async_trait]
/// impl HealthCheck for Always {
///     fn service(&self) -> &str { "example" }
///     fn backend(&self) -> &str { "memory" }
///     async fn probe(&self) -> Result<Probe> { Ok(Probe::healthy("fine")) }
/// }
///
/// # tokio_test_block_on(async {
/// let report = Always.check().await;
/// assert_eq!(report.status, HealthStatus::Healthy);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// The service this checks (`database`, `cache`, …).
    fn service(&self) -> &str;

    /// The backend behind it (`postgres`, `redis`, `memory`, …).
    fn backend(&self) -> &str;

    /// Talks to the backend; may take as long as it likes, [`check`](HealthCheck::check)
    /// bounds it.
    async fn probe(&self) -> Result<Probe>;

    /// The longest a check may take.
    fn deadline(&self) -> Duration {
        DEFAULT_HEALTH_DEADLINE
    }

    /// Whether the backend answers, cheaply enough for an unauthenticated readiness endpoint:
    /// a `PING`, a `SELECT 1`, a look at local state — no writes, no jobs, no calls to a
    /// provider's API that cost money or quota. Defaults to [`probe`](HealthCheck::probe) for
    /// backends whose probe is already that cheap.
    async fn ping(&self) -> Result<Probe> {
        self.probe().await
    }

    /// Runs [`probe`](HealthCheck::probe) within the deadline and reports.
    async fn check(&self) -> HealthReport {
        bounded_report(
            self.service(),
            self.backend(),
            self.deadline(),
            self.probe(),
        )
        .await
    }

    /// Runs [`ping`](HealthCheck::ping) within the deadline and reports.
    async fn check_ready(&self) -> HealthReport {
        bounded_report(self.service(), self.backend(), self.deadline(), self.ping()).await
    }
}

/// Runs `probe` for at most `deadline` and reports its outcome.
async fn bounded_report(
    service: &str,
    backend: &str,
    deadline: Duration,
    probe: impl std::future::Future<Output = Result<Probe>>,
) -> HealthReport {
    let started = Instant::now();
    let outcome = tokio::time::timeout(deadline, probe).await;
    let latency = started.elapsed();
    let (status, detail) = match outcome {
        Ok(Ok(probe)) => (probe.status, probe.detail),
        Ok(Err(err)) => (HealthStatus::Unhealthy, err.to_string()),
        Err(_) => (
            HealthStatus::Unhealthy,
            format!("timed out after {}", format_duration(deadline)),
        ),
    };
    HealthReport {
        service: service.to_owned(),
        backend: backend.to_owned(),
        status,
        latency,
        detail,
    }
}

#[async_trait]
impl<T: HealthCheck + ?Sized> HealthCheck for Arc<T> {
    fn service(&self) -> &str {
        (**self).service()
    }
    fn backend(&self) -> &str {
        (**self).backend()
    }
    async fn probe(&self) -> Result<Probe> {
        (**self).probe().await
    }
    async fn ping(&self) -> Result<Probe> {
        (**self).ping().await
    }
    fn deadline(&self) -> Duration {
        (**self).deadline()
    }
    async fn check(&self) -> HealthReport {
        (**self).check().await
    }
    async fn check_ready(&self) -> HealthReport {
        (**self).check_ready().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    struct Hangs;

    #[async_trait]
    impl HealthCheck for Hangs {
        fn service(&self) -> &str {
            "cache"
        }
        fn backend(&self) -> &str {
            "stuck"
        }
        async fn probe(&self) -> Result<Probe> {
            std::future::pending::<()>().await;
            unreachable!()
        }
        fn deadline(&self) -> Duration {
            Duration::from_millis(50)
        }
    }

    struct Fails;

    #[async_trait]
    impl HealthCheck for Fails {
        fn service(&self) -> &str {
            "database"
        }
        fn backend(&self) -> &str {
            "postgres"
        }
        async fn probe(&self) -> Result<Probe> {
            Err(Error::unavailable("connection refused"))
        }
    }

    #[tokio::test]
    async fn hung_backend_reports_unhealthy_within_deadline() {
        let started = Instant::now();
        let report = Arc::new(Hangs).check().await;
        assert_eq!(report.status, HealthStatus::Unhealthy);
        assert_eq!(report.detail, "timed out after 50ms");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn readiness_uses_the_ping_and_the_same_deadline() {
        let report = Arc::new(Hangs).check_ready().await;
        assert_eq!(report.status, HealthStatus::Unhealthy);
        assert_eq!(report.detail, "timed out after 50ms");
        let report = Fails.check_ready().await;
        assert!(
            report.detail.contains("connection refused"),
            "the default ping is the probe"
        );
    }

    #[tokio::test]
    async fn failure_is_unhealthy_with_reason() {
        let report = Fails.check().await;
        assert_eq!(report.status, HealthStatus::Unhealthy);
        assert!(report.detail.contains("connection refused"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "unhealthy");
        assert_eq!(json["service"], "database");
        assert!(json["latency_ms"].is_number());
    }
}
