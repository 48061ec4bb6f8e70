//! The `ErrorReporter` trait: errors, messages, breadcrumbs and users.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Any error a reporter can capture.
pub type DynError = dyn std::error::Error + Send + Sync + 'static;

/// Extra context attached to a captured error or message.
pub type Context = BTreeMap<String, serde_json::Value>;

/// Severity, as Sentry understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Debugging detail.
    Debug,
    /// Informational.
    #[default]
    Info,
    /// Something unexpected that was handled.
    Warning,
    /// A failure.
    Error,
    /// A failure that stops the process.
    Fatal,
}

/// A trail entry recorded before an error, sent with the next captured event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Breadcrumb {
    /// What happened.
    pub message: String,
    /// A dotted category such as `auth` or `billing.invoice`.
    pub category: Option<String>,
    /// Severity.
    pub level: Level,
    /// Structured detail.
    #[serde(default)]
    pub data: Context,
}

impl Breadcrumb {
    /// A breadcrumb with a message, at Info level.
    pub fn new(message: impl Into<String>) -> Self {
        Breadcrumb {
            message: message.into(),
            ..Breadcrumb::default()
        }
    }

    /// Sets the category.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Sets the level.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// Adds a data entry.
    pub fn data(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }
}

/// The user an error concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct User {
    /// Stable user id.
    pub id: Option<String>,
    /// Email; reporters drop it unless configured to keep personal data.
    pub email: Option<String>,
    /// Display or login name.
    pub username: Option<String>,
    /// The workspace (tenant), sent as a tag.
    pub workspace: Option<String>,
}

/// Reports errors somewhere a person will see them (Sentry, a local sink).
///
/// Methods are synchronous: reporting queues the event and returns, it never waits on the
/// network.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait ErrorReporter: Send + Sync {
    /// Captures an error with context; returns the event id, if one was recorded.
    fn capture_error(&self, error: &DynError, context: &Context) -> Option<String>;

    /// Captures a message at a level with context.
    fn capture_message(&self, message: &str, level: Level, context: &Context) -> Option<String>;

    /// Adds a breadcrumb to the current scope.
    fn add_breadcrumb(&self, breadcrumb: Breadcrumb);

    /// Sets the current user; `None` clears it.
    fn set_user(&self, user: Option<User>);
}

impl<T: ErrorReporter + ?Sized> ErrorReporter for Arc<T> {
    fn capture_error(&self, error: &DynError, context: &Context) -> Option<String> {
        (**self).capture_error(error, context)
    }
    fn capture_message(&self, message: &str, level: Level, context: &Context) -> Option<String> {
        (**self).capture_message(message, level, context)
    }
    fn add_breadcrumb(&self, breadcrumb: Breadcrumb) {
        (**self).add_breadcrumb(breadcrumb)
    }
    fn set_user(&self, user: Option<User>) {
        (**self).set_user(user)
    }
}
