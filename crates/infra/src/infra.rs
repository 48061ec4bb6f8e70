//! `Infra`: every enabled service, built from the environment.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use infra_core::{
    DEFAULT_HEALTH_DEADLINE, Env, HealthCheck, HealthReport, MetricsConfig, Probe, Result, Secret,
};

use crate::connection_report::ConnectionReport;
use crate::metrics_endpoint::MetricsEndpoint;

/// The services this binary was built with, each on the backend its variables select.
///
/// Backend rule: a service uses its real backend when its variables are set, and its embedded
/// default otherwise — in-memory cache, in-process jobs, in-process realtime hub, local
/// monitoring sink. The database is PostgreSQL only: without `DATABASE_URL` it reports
/// `NotConfigured`.
///
/// # One accessor per service
///
/// Each service has one accessor, named after the service, returning the service's own type —
/// cheap to clone, with the service's operations on it:
///
/// | accessor | returns | it is a | |
/// |---|---|---|---|
/// | [`database()`](Infra::database) | `Option<&`[`Database`](infra_db::Database)`>` | [`HealthCheck`] | `get()`, `read()`, `transaction(…)` |
/// | [`cache()`](Infra::cache) | `&`[`CacheService`](infra_cache::CacheService) | [`Cache`](infra_core::Cache) (so [`CacheExt`](infra_core::CacheExt)) | `rate_limiter()` |
/// | [`jobs()`](Infra::jobs) | `&`[`JobsRuntime`](infra_jobs::JobsRuntime) | [`EventSender`](infra_core::EventSender) | `register(function)`, `stats()` |
/// | [`realtime()`](Infra::realtime) | `&`[`RealtimeService`](infra_realtime::RealtimeService) | [`Realtime`](infra_core::Realtime) | `server()`, `credentials()` |
/// | [`monitoring()`](Infra::monitoring) | `&`[`Monitoring`](infra_monitoring::Monitoring) | [`ErrorReporter`](infra_core::ErrorReporter) | `tracking()`, `flush(…)` |
///
/// The trait objects — for code that holds an `Arc<dyn Cache>`, or takes a mock in its
/// tests — come from the service, each named after its role: `infra.cache().cache()`,
/// `.rate_limiter()`, `infra.jobs().events()`, `infra.realtime().realtime()`,
/// `infra.monitoring().reporter()`, and every service's `health()`. Every service is built by
/// `from_env(&Env)` (or `from_config(config)` from its typed configuration) and names its
/// backend with `backend()`; `Infra` follows the same rule.
///
/// ```no_run
/// # #[cfg(all(feature = "cache", feature = "jobs"))]
/// # async fn demo() -> infra::Result<()> {
/// use std::time::Duration;
/// use infra::jobs::{Function, Outcome};
/// use infra::{CacheExt, Env, Event, EventSender, Infra};
///
/// let infra = Infra::from_env(&Env::process())?; // a binary loads `.env` first (dotenvy)
/// infra.jobs().register(
///     Function::builder("greet")
///         .on_event("user/signed.up")
///         .raw_handler(|_event: Event, _ctx| async move { Outcome::success() })?,
/// )?;
/// infra.start().await?; // the jobs runtime's workers
/// infra.cache().set_json("greeting", &"hello", Duration::from_secs(60)).await?;
/// infra.jobs().send(Event::new("user/signed.up", serde_json::json!({ "userId": "u1" }))).await?;
/// let allowed = infra.cache().rate_limiter().check("ip:203.0.113.9", 10, Duration::from_secs(60)).await?;
/// let report = infra.check().await; // every service, end to end
/// println!("{}", serde_json::to_string_pretty(&report).unwrap());
/// infra.shutdown().await;
/// # let _ = allowed;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Infra {
    #[cfg(feature = "db")]
    database: Option<infra_db::Database>,
    #[cfg(feature = "cache")]
    cache: infra_cache::CacheService,
    #[cfg(feature = "jobs")]
    jobs: infra_jobs::JobsRuntime,
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
    metrics: MetricsEndpoint,
}

impl Infra {
    /// Builds every enabled service from `env` ([`Env::process`] for the process
    /// environment; libraries don't read `.env`, a binary calls `dotenvy::dotenv()` first).
    /// Fails on the first malformed variable, naming it; building never connects (pools are
    /// lazy), so it does not fail on a down service.
    ///
    /// ```
    /// use infra::{Env, Infra};
    ///
    /// // Nothing set: every service on its embedded default, no database.
    /// let infra = Infra::from_env(&Env::empty()).unwrap();
    /// # #[cfg(feature = "db")]
    /// assert!(infra.database().is_none());
    /// // A malformed variable is an error naming it.
    /// let err = Infra::from_env(&Env::from_pairs([("INFRA_HEALTH_TIMEOUT", "soon")])).err().unwrap();
    /// assert_eq!(err.variable(), Some("INFRA_HEALTH_TIMEOUT"));
    /// ```
    pub fn from_env(env: &Env) -> Result<Self> {
        let health_deadline = env
            .duration("INFRA_HEALTH_TIMEOUT")?
            .unwrap_or(DEFAULT_HEALTH_DEADLINE);
        let readiness_cache_ttl = env
            .duration("INFRA_READINESS_CACHE_TTL")?
            .unwrap_or(DEFAULT_READINESS_CACHE_TTL);
        // First: the services register their metric handles while being built, and those
        // bind to the recorder installed at that moment.
        let metrics = MetricsEndpoint::from_config(MetricsConfig::from_env(env)?)?;
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
            Some(db) => infra_jobs::JobsRuntime::from_env_on(env, db)?,
            None => infra_jobs::JobsRuntime::from_env(env)?,
        };
        #[cfg(all(feature = "jobs", not(feature = "db")))]
        let jobs = infra_jobs::JobsRuntime::from_env(env)?;
        #[cfg(feature = "monitoring")]
        let monitoring = infra_monitoring::Monitoring::from_env(env)?;
        // Runs are traced (continuing the trace of the request that sent their event) and
        // cron fires checked in where errors go.
        #[cfg(all(feature = "jobs", feature = "monitoring"))]
        jobs.set_monitor(monitoring.run_monitor());
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
            monitoring,
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
            metrics,
        })
    }

    /// Starts what runs in the background: the jobs runtime's workers (on the memory or
    /// PostgreSQL queue; nothing to start when Inngest runs the functions). Register the
    /// app's functions first (`infra.jobs().register(…)`); until this is called the jobs
    /// health check reports that no worker runs. Idempotent.
    ///
    /// With `INFRA_METRICS_ADDR` set it also binds that address, serving `GET /metrics`
    /// (Prometheus text exposition), and refreshes the periodic gauges every
    /// `INFRA_METRICS_INTERVAL` (see `docs/metrics.md`); a failure to bind is an error naming
    /// the variable.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let infra = infra::Infra::from_env(&infra::Env::empty()).unwrap();
    /// // infra.jobs().register(…) for each of the app's functions, then:
    /// infra.start().await.unwrap();
    /// // … serve until a shutdown signal, then:
    /// infra.shutdown().await;
    /// # });
    /// ```
    pub async fn start(&self) -> Result<()> {
        #[cfg(feature = "jobs")]
        self.jobs.start().await?;
        #[cfg(feature = "metrics")]
        {
            let infra = self.clone();
            self.metrics
                .start(move || {
                    let infra = infra.clone();
                    async move { infra.record_metrics().await }
                })
                .await?;
        }
        Ok(())
    }

    /// Refreshes every gauge that needs a reading, once: the pool's connections by state and
    /// its waiters, the queue's depth by function and state and its oldest ready job's age
    /// (one stats query), the realtime server's connections, channels and members, the
    /// memory cache's size. What the metrics sampler calls each `INFRA_METRICS_INTERVAL`;
    /// without an installed recorder it records nothing.
    pub async fn record_metrics(&self) {
        #[cfg(feature = "db")]
        if let Some(db) = &self.database {
            db.record_metrics();
        }
        #[cfg(feature = "cache")]
        self.cache.record_metrics();
        #[cfg(feature = "realtime")]
        if let Some(server) = self.realtime.server() {
            server.record_metrics();
        }
        #[cfg(feature = "jobs")]
        if let Err(err) = self.jobs.record_metrics().await {
            tracing::warn!(error = %err, "reading the queue's stats for the metrics failed");
        }
    }

    /// The metrics settings (`INFRA_METRICS_ADDR`, `INFRA_METRICS_INTERVAL`).
    pub fn metrics_config(&self) -> MetricsConfig {
        self.metrics.config()
    }

    /// Where `GET /metrics` is served, once [`start`](Infra::start) bound it (the bound
    /// address: with port 0 in `INFRA_METRICS_ADDR`, the port the system chose).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.addr()
    }

    /// Stops the background work [`start`](Infra::start) began, letting running jobs finish
    /// (up to the jobs' shutdown grace period). Call it once the server has stopped.
    pub async fn shutdown(&self) {
        self.metrics.stop();
        #[cfg(feature = "jobs")]
        self.jobs.shutdown().await;
    }

    /// The database, when `DATABASE_URL` is set.
    ///
    /// ```no_run
    /// # async fn demo(infra: infra::Infra) -> infra::Result<()> {
    /// use infra::db::diesel_async::RunQueryDsl;
    ///
    /// let Some(db) = infra.database() else {
    ///     return Err(infra::Error::config("DATABASE_URL", "is not set"));
    /// };
    /// let mut conn = db.get().await?;
    /// infra::db::diesel::sql_query("SELECT 1")
    ///     .execute(&mut conn)
    ///     .await
    ///     .map_err(infra::db::map_diesel_error)?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "db")]
    pub fn database(&self) -> Option<&infra_db::Database> {
        self.database.as_ref()
    }

    /// The cache service (Redis, Upstash REST or memory): a [`Cache`](infra_core::Cache)
    /// itself; its [`rate_limiter`](infra_cache::CacheService::rate_limiter) on the same
    /// backend.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use infra::{CacheExt, Env, Infra, RateLimiter};
    ///
    /// let infra = Infra::from_env(&Env::empty()).unwrap(); // no REDIS_URL: in memory
    /// infra.cache().set_json("greeting", &"hello", Duration::from_secs(60)).await.unwrap();
    /// let greeting: Option<String> = infra.cache().get_json("greeting").await.unwrap();
    /// assert_eq!(greeting.as_deref(), Some("hello"));
    /// let limiter = infra.cache().rate_limiter();
    /// assert!(limiter.check("ip:203.0.113.9", 10, Duration::from_secs(60)).await.unwrap().allowed);
    /// # });
    /// ```
    #[cfg(feature = "cache")]
    pub fn cache(&self) -> &infra_cache::CacheService {
        &self.cache
    }

    /// The jobs runtime (Inngest, the PostgreSQL queue or in-process): register the app's
    /// functions on it and send events through it (it is an
    /// [`EventSender`](infra_core::EventSender)).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use infra::jobs::{Function, Outcome};
    /// use infra::{Env, Event, EventSender, Infra};
    ///
    /// let infra = Infra::from_env(&Env::empty()).unwrap(); // the in-process queue
    /// infra.jobs().register(
    ///     Function::builder("welcome")
    ///         .on_event("user/signed.up")
    ///         .raw_handler(|_event: Event, _ctx| async move { Outcome::success() })
    ///         .unwrap(),
    /// ).unwrap();
    /// infra.start().await.unwrap();
    /// let id = infra.jobs().send(Event::new("user/signed.up", serde_json::json!({ "userId": "u1" }))).await.unwrap();
    /// assert!(!id.is_empty());
    /// infra.shutdown().await;
    /// # });
    /// ```
    #[cfg(feature = "jobs")]
    pub fn jobs(&self) -> &infra_jobs::JobsRuntime {
        &self.jobs
    }

    /// The realtime service (Pusher, or the embedded Pusher-protocol server): a
    /// [`Realtime`](infra_core::Realtime) itself; the embedded server's router and the app's
    /// credentials come from it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use infra::realtime::{RealtimeEvent, RealtimeNotify};
    /// use infra::{Env, Infra};
    ///
    /// #[derive(serde::Serialize)]
    /// struct TaskCreated { title: String }
    /// impl RealtimeEvent for TaskCreated { const NAME: &'static str = "task.created"; }
    ///
    /// let infra = Infra::from_env(&Env::empty()).unwrap(); // the embedded server
    /// // On `private-user-42`, where that user's pusher-js subscribed.
    /// infra.realtime().notify_user("42", &TaskCreated { title: "Call Ada".into() }).await.unwrap();
    /// # });
    /// ```
    #[cfg(feature = "realtime")]
    pub fn realtime(&self) -> &infra_realtime::RealtimeService {
        &self.realtime
    }

    /// Error monitoring (Sentry or the local sink): an
    /// [`ErrorReporter`](infra_core::ErrorReporter) itself.
    ///
    /// ```
    /// use infra::{Breadcrumb, Context, Env, ErrorReporter, Infra, User};
    ///
    /// let infra = Infra::from_env(&Env::empty()).unwrap(); // no SENTRY_DSN: JSON lines on stderr
    /// let monitoring = infra.monitoring();
    /// monitoring.set_user(Some(User { id: Some("u-42".into()), ..Default::default() }));
    /// monitoring.add_breadcrumb(Breadcrumb::new("sync started").category("calendar"));
    /// let err = std::io::Error::other("provider timed out");
    /// monitoring.capture_error(&err, &Context::new());
    /// monitoring.tracking().api_error("/api/calendars/{id}/sync", &err, 502);
    /// ```
    #[cfg(feature = "monitoring")]
    pub fn monitoring(&self) -> &infra_monitoring::Monitoring {
        &self.monitoring
    }

    /// The deadline each check gets in [`check`](Infra::check) and
    /// [`check_ready`](Infra::check_ready) (`INFRA_HEALTH_TIMEOUT`, default 5s).
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
            self.database.as_ref().map(infra_db::Database::health),
        ));
        #[cfg(feature = "cache")]
        checks.push(("cache", Some(self.cache.health())));
        #[cfg(feature = "jobs")]
        checks.push(("jobs", Some(self.jobs.health())));
        #[cfg(feature = "realtime")]
        checks.push(("realtime", Some(self.realtime.health())));
        #[cfg(feature = "monitoring")]
        checks.push(("monitoring", Some(self.monitoring.health())));
        checks
    }

    /// Checks every service concurrently, end to end ([`HealthCheck::check`]: a probe key
    /// written and read back, a probe job, a call to each provider's API); each ends within
    /// the health deadline, so a hung backend costs at most that long and never hangs the
    /// caller. What `GET /api/test-infrastructure` and `cargo xtask verify` report (the
    /// TypeScript module's `testAllConnections`).
    pub async fn check(&self) -> ConnectionReport {
        self.run_checks(Depth::EndToEnd).await
    }

    /// Checks every service concurrently the cheap way ([`HealthCheck::check_ready`]: a
    /// `PING`, a `SELECT 1`, local state; nothing written, no provider's API called), within
    /// the same deadline: what `GET /api/health/ready` reports.
    pub async fn check_ready(&self) -> ConnectionReport {
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
                let Some(check) = check else {
                    return HealthReport::not_configured(service, not_configured_hint(service));
                };
                let check = WithinDeadline { check, deadline };
                match depth {
                    Depth::EndToEnd => check.check().await,
                    Depth::Ping => check.check_ready().await,
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

/// A service's check under the umbrella's deadline as well as its own: the shorter of the two
/// bounds [`HealthCheck::check`] and [`HealthCheck::check_ready`], which report a check that
/// ran out of time as Unhealthy with "timed out after …".
struct WithinDeadline {
    check: Arc<dyn HealthCheck>,
    deadline: Duration,
}

#[async_trait]
impl HealthCheck for WithinDeadline {
    fn service(&self) -> &str {
        self.check.service()
    }

    fn backend(&self) -> &str {
        self.check.backend()
    }

    async fn probe(&self) -> Result<Probe> {
        self.check.probe().await
    }

    async fn ping(&self) -> Result<Probe> {
        self.check.ping().await
    }

    fn deadline(&self) -> Duration {
        self.check.deadline().min(self.deadline)
    }
}

fn not_configured_hint(service: &str) -> &'static str {
    match service {
        "database" => "no database: set DATABASE_URL",
        _ => "not configured",
    }
}
