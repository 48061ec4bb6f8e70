//! `ErrorTracking`: the TypeScript module's `ErrorTracking.apiError(route, error, status)` and
//! its siblings, with consistent tags and fingerprints so Sentry groups them well.

use infra_core::{Context, DynError, Level};

use crate::monitoring::Monitoring;
use crate::tracking::{Tracking, error_type};

/// Typed error tracking over a [`Monitoring`]: each helper tags the area it failed in and
/// fingerprints by area, operation and error type, so one failing route or query is one
/// issue in Sentry however its messages vary. High-cardinality values (keys, channels, ids)
/// go to the event's context, not to tags.
///
/// ```
/// use infra_core::Env;
/// use infra_monitoring::Monitoring;
///
/// let log = std::env::temp_dir().join(format!("infra-tracking-doc-{}.jsonl", std::process::id()));
/// let monitoring = Monitoring::from_env(&Env::from_pairs([("INFRA_MONITORING_LOG_FILE", log.to_str().unwrap())])).unwrap();
/// let err = std::io::Error::other("upstream timed out");
/// monitoring.tracking().api_error("/api/events/:id", &err, 502);
/// let line = std::fs::read_to_string(&log).unwrap();
/// assert!(line.contains("\"route\":\"/api/events/:id\""));
/// # std::fs::remove_file(log).ok();
/// ```
#[derive(Clone)]
pub struct ErrorTracking {
    monitoring: Monitoring,
}

impl Monitoring {
    /// The typed helpers.
    pub fn tracking(&self) -> ErrorTracking {
        ErrorTracking {
            monitoring: self.clone(),
        }
    }
}

impl ErrorTracking {
    /// A failed API request: tags `route`, `status`; 5xx are errors, 4xx warnings.
    pub fn api_error(&self, route: &str, error: &DynError, status: u16) -> Option<String> {
        let status_text = status.to_string();
        let class = format!("{}xx", status / 100);
        let mut tracking = Tracking::for_area(
            "api",
            &[("route", route), ("http.status_code", &status_text)],
            &["api", route, &class, &error_type(error)],
        );
        if status < 500 {
            tracking.level = Level::Warning;
        }
        self.monitoring
            .capture_tracked(error, &Context::new(), &tracking)
    }

    /// A failed database operation (`find_user`, `insert_event`…).
    pub fn database_error(&self, operation: &str, error: &DynError) -> Option<String> {
        let tracking = Tracking::for_area(
            "database",
            &[("db.operation", operation)],
            &["database", operation, &error_type(error)],
        );
        self.monitoring
            .capture_tracked(error, &Context::new(), &tracking)
    }

    /// A failed cache operation; the key goes to the context.
    pub fn cache_error(&self, operation: &str, key: &str, error: &DynError) -> Option<String> {
        let tracking = Tracking::for_area(
            "cache",
            &[("cache.operation", operation)],
            &["cache", operation, &error_type(error)],
        );
        let mut context = Context::new();
        // Named so the scrubber, which hides anything called `key`, lets it through.
        context.insert("cache.key".into(), key.into());
        self.monitoring.capture_tracked(error, &context, &tracking)
    }

    /// A failed background function run; event and attempt go to tags and context.
    pub fn job_error(
        &self,
        function: &str,
        event: &str,
        attempt: u32,
        error: &DynError,
    ) -> Option<String> {
        let tracking = Tracking::for_area(
            "job",
            &[("job.function", function), ("job.event", event)],
            &["job", function, &error_type(error)],
        );
        let mut context = Context::new();
        context.insert("attempt".into(), attempt.into());
        self.monitoring.capture_tracked(error, &context, &tracking)
    }

    /// A failed realtime trigger; the channel goes to the context.
    pub fn realtime_error(&self, channel: &str, event: &str, error: &DynError) -> Option<String> {
        let tracking = Tracking::for_area(
            "realtime",
            &[("realtime.event", event)],
            &["realtime", event, &error_type(error)],
        );
        let mut context = Context::new();
        context.insert("channel".into(), channel.into());
        self.monitoring.capture_tracked(error, &context, &tracking)
    }

    /// A failed call to a third party (an OAuth provider, OpenAI…).
    pub fn external_service_error(&self, service: &str, error: &DynError) -> Option<String> {
        let tracking = Tracking::for_area(
            "external",
            &[("external.service", service)],
            &["external", service, &error_type(error)],
        );
        self.monitoring
            .capture_tracked(error, &Context::new(), &tracking)
    }
}
