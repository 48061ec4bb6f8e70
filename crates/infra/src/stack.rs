//! `Infra`: every enabled service, built from the environment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infra_core::{
    DEFAULT_HEALTH_DEADLINE, Env, HealthCheck, HealthReport, HealthStatus, Result, Secret,
    format_duration,
};

use crate::connections::ConnectionReport;

/// The services this binary was built with, each on the backend its variables select.
///
/// Backend rule: a service uses its real backend when its variables are set, and its embedded
/// default otherwise — in-memory cache, in-process jobs, in-process realtime hub, local
/// monitoring sink. The database is PostgreSQL only: without `DATABASE_URL` it reports
/// `NotConfigured`.
///
/// ```no_run
/// # async fn demo() -> infra::Result<()> {
/// let infra = infra::Infra::from_env()?;
/// infra.start().await?; // the jobs runtime's workers
/// let report = infra.test_all_connections().await;
/// println!("{}", serde_json::to_string_pretty(&report).unwrap());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Infra {
    #[cfg(feature = "db")]
    database: Option<infra_db::Database>,
    #[cfg(feature = "cache")]
    cache: infra_cache::CacheService,
    #[cfg(feature = "jobs")]
    jobs: infra_jobs::Jobs,
    #[cfg(feature = "realtime")]
    realtime: infra_realtime::RealtimeService,
    #[cfg(feature = "monitoring")]
    monitoring: infra_monitoring::Monitoring,
    health_deadline: Duration,
    readiness_cache_ttl: Duration,
    admin_token: Option<Secret<String>>,
    #[cfg(all(feature = "jobs", feature = "http"))]
    ingest: Option<infra_jobs::IngestConfig>,
    #[cfg(all(feature = "jobs", feature = "http"))]
    inngest_serve: Option<infra_jobs::ServeConfig>,
    #[cfg(feature = "http")]
    http_server: infra_core::http_server::HttpServerConfig,
    #[cfg(all(feature = "cache", feature = "http"))]
    trusted_proxies: infra_cache::tower_layer::TrustedProxies,
}

impl Infra {
    /// Builds every enabled service from the process environment.
    ///
    /// Libraries don't read `.env`; a binary calls `dotenvy::dotenv()` before this.
    pub fn from_env() -> Result<Self> {
        Infra::from_env_with(&Env::process())
    }

    /// Builds every enabled service from `env`. Fails on the first malformed variable, naming
    /// it; building never connects (pools are lazy), so it does not fail on a down service.
    pub fn from_env_with(env: &Env) -> Result<Self> {
        let health_deadline = env
            .duration("INFRA_HEALTH_TIMEOUT")?
            .unwrap_or(DEFAULT_HEALTH_DEADLINE);
        let readiness_cache_ttl = env
            .duration("INFRA_READINESS_CACHE_TTL")?
            .unwrap_or(DEFAULT_READINESS_CACHE_TTL);
        #[cfg(feature = "db")]
        let database = if env.is_set("DATABASE_URL") {
            Some(infra_db::Database::from_env(env)?)
        } else {
            None
        };
        // A PostgreSQL queue reads the same DATABASE_URL: it shares the app's pool rather
        // than opening a second one to the same database.
        #[cfg(all(feature = "jobs", feature = "db"))]
        let jobs = match &database {
            Some(db) => infra_jobs::Jobs::from_env_on(env, db)?,
            None => infra_jobs::Jobs::from_env(env)?,
        };
        #[cfg(all(feature = "jobs", not(feature = "db")))]
        let jobs = infra_jobs::Jobs::from_env(env)?;
        Ok(Infra {
            #[cfg(feature = "db")]
            database,
            #[cfg(feature = "cache")]
            cache: infra_cache::CacheService::from_env(env)?,
            #[cfg(feature = "jobs")]
            jobs,
            #[cfg(feature = "realtime")]
            realtime: infra_realtime::RealtimeService::from_env(env)?,
            #[cfg(feature = "monitoring")]
            monitoring: infra_monitoring::Monitoring::from_env(env)?,
            health_deadline,
            readiness_cache_ttl,
            admin_token: env.optional_secret("INFRA_ADMIN_TOKEN"),
            #[cfg(all(feature = "jobs", feature = "http"))]
            inngest_serve: if jobs_on_inngest(env)? {
                Some(infra_jobs::ServeConfig::from_env(
                    env,
                    env.optional("INNGEST_APP_ID")
                        .unwrap_or_else(|| DEFAULT_INNGEST_APP_ID.to_owned()),
                )?)
            } else {
                None
            },
            #[cfg(all(feature = "jobs", feature = "http"))]
            ingest: if env.is_set(infra_jobs::INGEST_KEYS_VAR) {
                Some(infra_jobs::IngestConfig::from_env(env)?)
            } else {
                None
            },
            #[cfg(feature = "http")]
            http_server: infra_core::http_server::HttpServerConfig::from_env(env)?,
            #[cfg(all(feature = "cache", feature = "http"))]
            trusted_proxies: infra_cache::tower_layer::TrustedProxies::from_env(env)?,
        })
    }

    /// Starts what runs in the background: the jobs runtime's workers (on the memory or
    /// PostgreSQL queue; nothing to start when Inngest runs the functions). Register the
    /// app's functions first (`infra.jobs().runtime().register(…)`); until this is called the
    /// jobs health check reports that no worker runs. Idempotent.
    pub async fn start(&self) -> Result<()> {
        #[cfg(feature = "jobs")]
        self.jobs.runtime().start().await?;
        Ok(())
    }

    /// Stops the background work [`start`](Infra::start) began, letting running jobs finish.
    pub async fn shutdown(&self) {
        #[cfg(feature = "jobs")]
        self.jobs.runtime().shutdown().await;
    }

    /// The database, when `DATABASE_URL` is set.
    #[cfg(feature = "db")]
    pub fn database(&self) -> Option<&infra_db::Database> {
        self.database.as_ref()
    }

    /// The cache (Redis, Upstash REST or memory).
    #[cfg(feature = "cache")]
    pub fn cache(&self) -> Arc<dyn infra_core::Cache> {
        self.cache.cache()
    }

    /// The rate limiter (Redis, Upstash REST or memory).
    #[cfg(feature = "cache")]
    pub fn rate_limiter(&self) -> Arc<dyn infra_core::RateLimiter> {
        self.cache.rate_limiter()
    }

    /// Where background events go (Inngest or in-process).
    #[cfg(feature = "jobs")]
    pub fn events(&self) -> Arc<dyn infra_core::EventSender> {
        self.jobs.events()
    }

    /// The jobs service, for backend-specific access such as the local bus.
    #[cfg(feature = "jobs")]
    pub fn jobs(&self) -> &infra_jobs::Jobs {
        &self.jobs
    }

    /// Where realtime events are triggered (Pusher, or the embedded Pusher-protocol server).
    #[cfg(feature = "realtime")]
    pub fn realtime(&self) -> Arc<dyn infra_core::Realtime> {
        self.realtime.realtime()
    }

    /// The realtime service, for backend-specific access such as the embedded server's router.
    #[cfg(feature = "realtime")]
    pub fn realtime_service(&self) -> &infra_realtime::RealtimeService {
        &self.realtime
    }

    /// Error monitoring (Sentry or the local sink).
    #[cfg(feature = "monitoring")]
    pub fn monitoring(&self) -> &infra_monitoring::Monitoring {
        &self.monitoring
    }

    /// The reporter as a trait object.
    #[cfg(feature = "monitoring")]
    pub fn reporter(&self) -> Arc<dyn infra_core::ErrorReporter> {
        Arc::new(self.monitoring.clone())
    }

    /// The deadline each check gets in [`test_all_connections`](Infra::test_all_connections)
    /// (`INFRA_HEALTH_TIMEOUT`, default 5s).
    pub fn health_deadline(&self) -> Duration {
        self.health_deadline
    }

    /// The operators' token for `/api/test-infrastructure` (`INFRA_ADMIN_TOKEN`); without one
    /// that route answers 404.
    pub fn admin_token(&self) -> Option<&Secret<String>> {
        self.admin_token.as_ref()
    }

    /// The `/api/inngest` serve handler's settings, when the jobs run on Inngest.
    #[cfg(all(feature = "jobs", feature = "http"))]
    pub fn inngest_serve_config(&self) -> Option<&infra_jobs::ServeConfig> {
        self.inngest_serve.as_ref()
    }

    /// The limits [`serve`](Infra::serve) puts on connections (`INFRA_HTTP_*`).
    #[cfg(feature = "http")]
    pub fn http_server_config(&self) -> infra_core::http_server::HttpServerConfig {
        self.http_server
    }

    /// The proxies allowed to name the client in `X-Forwarded-For` for the rate limit
    /// (`INFRA_TRUSTED_PROXIES`; none by default: the socket's peer is the client).
    #[cfg(all(feature = "cache", feature = "http"))]
    pub fn trusted_proxies(&self) -> &infra_cache::tower_layer::TrustedProxies {
        &self.trusted_proxies
    }

    /// The ingestion route's settings, when `INFRA_JOBS_INGEST_KEYS` is set.
    #[cfg(all(feature = "jobs", feature = "http"))]
    pub fn ingest_config(&self) -> Option<&infra_jobs::IngestConfig> {
        self.ingest.as_ref()
    }

    /// Every service's health check, in report order; `None` for a service that is built in
    /// but not configured.
    // Pushes, not vec![]: each entry is behind its own feature.
    #[allow(clippy::vec_init_then_push)]
    fn checks(&self) -> Vec<(&'static str, Option<Arc<dyn HealthCheck>>)> {
        #[allow(unused_mut)] // empty when no service feature is on
        let mut checks: Vec<(&'static str, Option<Arc<dyn HealthCheck>>)> = Vec::new();
        #[cfg(feature = "db")]
        checks.push((
            "database",
            self.database
                .clone()
                .map(|db| Arc::new(db) as Arc<dyn HealthCheck>),
        ));
        #[cfg(feature = "cache")]
        checks.push(("cache", Some(self.cache.health())));
        #[cfg(feature = "jobs")]
        checks.push(("jobs", Some(self.jobs.health())));
        #[cfg(feature = "realtime")]
        checks.push(("realtime", Some(self.realtime.health())));
        #[cfg(feature = "monitoring")]
        checks.push((
            "monitoring",
            Some(Arc::new(self.monitoring.clone()) as Arc<dyn HealthCheck>),
        ));
        checks
    }

    /// Checks every service concurrently, end to end ([`HealthCheck::check`]: a probe key
    /// written and read back, a probe job, a call to each provider's API); each ends within
    /// the health deadline, so a hung backend costs at most that long and never hangs the
    /// caller.
    pub async fn test_all_connections(&self) -> ConnectionReport {
        self.run_checks(Depth::EndToEnd).await
    }

    /// Checks every service concurrently the cheap way ([`HealthCheck::check_ready`]: a
    /// `PING`, a `SELECT 1`, local state; nothing written, no provider's API called), within
    /// the same deadline: what `GET /api/health/ready` reports.
    pub async fn readiness_report(&self) -> ConnectionReport {
        self.run_checks(Depth::Ping).await
    }

    /// How long `GET /api/health/ready` reuses an answer (`INFRA_READINESS_CACHE_TTL`,
    /// default 2s).
    pub fn readiness_cache_ttl(&self) -> Duration {
        self.readiness_cache_ttl
    }

    async fn run_checks(&self, depth: Depth) -> ConnectionReport {
        let deadline = self.health_deadline;
        let checks = self
            .checks()
            .into_iter()
            .map(|(service, check)| async move {
                match check {
                    None => HealthReport::not_configured(service, not_configured_hint(service)),
                    Some(check) => bounded_check(service, check.as_ref(), depth, deadline).await,
                }
            });
        ConnectionReport {
            services: futures::future::join_all(checks).await,
        }
    }
}

/// How far a health check goes.
#[derive(Clone, Copy)]
enum Depth {
    /// [`HealthCheck::check`].
    EndToEnd,
    /// [`HealthCheck::check_ready`].
    Ping,
}

/// How long readiness answers are reused unless `INFRA_READINESS_CACHE_TTL` says otherwise.
pub const DEFAULT_READINESS_CACHE_TTL: Duration = Duration::from_secs(2);

/// The app id Inngest lists the functions under unless `INNGEST_APP_ID` names one.
#[cfg(all(feature = "jobs", feature = "http"))]
pub const DEFAULT_INNGEST_APP_ID: &str = "infra-app";

/// Whether the app serves `/api/inngest`: the jobs run on Inngest and its requests can be
/// verified (`INNGEST_SIGNING_KEY`) or come from the dev server (`INNGEST_DEV`). An app that
/// only sends events to Inngest needs neither.
#[cfg(all(feature = "jobs", feature = "http"))]
fn jobs_on_inngest(env: &Env) -> Result<bool> {
    let on_inngest = matches!(
        infra_jobs::JobsConfig::from_env(env)?,
        infra_jobs::JobsConfig::Inngest(_)
    );
    Ok(on_inngest && (env.is_set("INNGEST_SIGNING_KEY") || env.is_set("INNGEST_DEV")))
}

/// Runs a check under the umbrella's deadline as well as its own.
async fn bounded_check(
    service: &str,
    check: &dyn HealthCheck,
    depth: Depth,
    deadline: Duration,
) -> HealthReport {
    let started = Instant::now();
    let report = match depth {
        Depth::EndToEnd => check.check(),
        Depth::Ping => check.check_ready(),
    };
    match tokio::time::timeout(deadline, report).await {
        Ok(report) => report,
        Err(_) => HealthReport {
            service: service.to_owned(),
            backend: check.backend().to_owned(),
            status: HealthStatus::Unhealthy,
            latency: started.elapsed(),
            detail: format!("timed out after {}", format_duration(deadline)),
        },
    }
}

fn not_configured_hint(service: &str) -> &'static str {
    match service {
        "database" => "DATABASE_URL is not set",
        _ => "not configured",
    }
}
