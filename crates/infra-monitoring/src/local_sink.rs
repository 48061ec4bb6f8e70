//! The local sink: events as JSON lines, the embedded default when no DSN is set.

use std::collections::{BTreeMap, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use infra_core::{Breadcrumb, Context, DynError, Level, User};
use serde_json::{Value, json};

use crate::config::{MonitoringConfig, SinkTarget};
use crate::scrub::scrub_value;
use crate::tracking::{Tracking, error_type};

/// Breadcrumbs kept for the next event, as Sentry's default.
pub(crate) const MAX_BREADCRUMBS: usize = 100;

#[derive(Default)]
struct Scope {
    breadcrumbs: VecDeque<Value>,
    user: Option<User>,
}

/// Writes one JSON object per captured event, with the scope's breadcrumbs, user and tags,
/// scrubbed like Sentry events.
pub struct LocalSink {
    config: MonitoringConfig,
    scope: Mutex<Scope>,
    out: Mutex<Box<dyn Write + Send>>,
}

impl LocalSink {
    /// A sink writing where `config.sink` says.
    pub fn new(config: MonitoringConfig) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match &config.sink {
            SinkTarget::Stderr => Box::new(std::io::stderr()),
            SinkTarget::File(path) => {
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        Ok(LocalSink {
            config,
            scope: Mutex::new(Scope::default()),
            out: Mutex::new(out),
        })
    }

    /// `SENTRY_TRACES_SAMPLE_RATE`: the share of new traces whose spans are written.
    pub(crate) fn traces_sample_rate(&self) -> f32 {
        self.config.traces_sample_rate
    }

    fn scope(&self) -> std::sync::MutexGuard<'_, Scope> {
        self.scope.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn capture(&self, level: Level, body: (&str, Value), context: &Context) -> String {
        self.capture_with(level, body, context, &Tracking::default())
    }

    pub(crate) fn capture_with(
        &self,
        level: Level,
        body: (&str, Value),
        context: &Context,
        tracking: &Tracking,
    ) -> String {
        let event_id = format!("{:032x}", rand::random::<u128>());
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let scope = self.scope();
        let user = scope.user.as_ref().map(|u| {
            json!({
                "id": u.id,
                "username": u.username,
                "email": if self.config.send_emails { u.email.clone() } else { None },
            })
        });
        let mut tags: BTreeMap<String, String> = tracking.tags.clone();
        if let Some(workspace) = scope.user.as_ref().and_then(|u| u.workspace.clone()) {
            tags.insert("workspace".to_owned(), workspace);
        }
        let mut event = json!({
            "event_id": event_id,
            "timestamp_ms": timestamp_ms,
            "level": level,
            "environment": self.config.environment,
            "release": self.config.release,
            "tags": tags,
            "user": user,
            "context": context,
            "breadcrumbs": scope.breadcrumbs,
        });
        if !tracking.fingerprint.is_empty() {
            event["fingerprint"] = json!(tracking.fingerprint);
        }
        drop(scope);
        event[body.0] = body.1;
        scrub_value(&mut event);
        self.write_line(&event);
        event_id
    }

    /// Writes a line of `kind` (`check_in`, `transaction`) with `body`'s fields, the
    /// environment and release, scrubbed like events.
    pub(crate) fn record(&self, kind: &str, body: Value) {
        let mut line = json!({
            "type": kind,
            "timestamp_ms": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default(),
            "environment": self.config.environment,
            "release": self.config.release,
        });
        if let (Value::Object(line), Value::Object(body)) = (&mut line, body) {
            line.extend(body);
        }
        scrub_value(&mut line);
        self.write_line(&line);
    }

    fn write_line(&self, value: &Value) {
        let mut line = value.to_string();
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A sink that can't write must not take the app down with it.
        let _ = out.write_all(line.as_bytes()).and_then(|_| out.flush());
    }

    pub(crate) fn capture_error_with(
        &self,
        error: &DynError,
        context: &Context,
        tracking: &Tracking,
    ) -> String {
        let mut chain = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        let exception = json!({
            "type": error_type(error),
            "value": error.to_string(),
            "causes": chain,
        });
        self.capture_with(tracking.level, ("exception", exception), context, tracking)
    }

    pub(crate) fn add_breadcrumb(&self, breadcrumb: Breadcrumb) {
        let mut scope = self.scope();
        if scope.breadcrumbs.len() == MAX_BREADCRUMBS {
            scope.breadcrumbs.pop_front();
        }
        scope.breadcrumbs.push_back(json!({
            "timestamp_ms": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default(),
            "message": breadcrumb.message,
            "category": breadcrumb.category,
            "level": breadcrumb.level,
            "data": breadcrumb.data,
        }));
    }

    pub(crate) fn set_user(&self, user: Option<User>) {
        self.scope().user = user;
    }
}
