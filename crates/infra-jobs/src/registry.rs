//! The app's functions, by id and by triggering event.
//!
//! A [`FunctionRegistry`] is a value; a runtime keeps it in a [`SharedRegistry`], which
//! registration replaces whole (copy on write). Readers — the send path, the workers, the
//! cron scheduler, the serve handler — take a snapshot and never hold a lock while a
//! function runs. Ids are unique.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use infra_core::{Error, ErrorKind, Result};

use crate::function::{Function, Trigger};

/// The functions a runtime runs (and serves to Inngest).
#[derive(Debug, Clone, Default)]
pub struct FunctionRegistry {
    by_id: BTreeMap<String, Arc<Function>>,
}

impl FunctionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        FunctionRegistry::default()
    }

    /// Adds a function; a second function with the same id is a conflict.
    pub fn register(&mut self, function: Function) -> Result<()> {
        if self.by_id.contains_key(function.id()) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "a function with id `{}` is already registered",
                    function.id()
                ),
            )
            .with_context("function", function.id()));
        }
        self.by_id
            .insert(function.id().to_owned(), Arc::new(function));
        Ok(())
    }

    /// The function with `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Function>> {
        self.by_id.get(id)
    }

    /// Every function, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Function>> {
        self.by_id.values()
    }

    /// The functions an event named `name` triggers.
    pub fn triggered_by<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<Function>> {
        self.by_id.values().filter(move |f| f.is_triggered_by(name))
    }

    /// The functions with a cron trigger.
    pub fn scheduled(&self) -> impl Iterator<Item = &Arc<Function>> {
        self.by_id
            .values()
            .filter(|f| f.triggers().iter().any(|t| matches!(t, Trigger::Cron(_))))
    }

    /// How many functions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The registry a runtime and its workers share: snapshots to read, copy on write to
/// register.
#[derive(Clone, Default)]
pub(crate) struct SharedRegistry {
    current: Arc<RwLock<Arc<FunctionRegistry>>>,
}

impl SharedRegistry {
    /// The functions registered so far.
    pub(crate) fn snapshot(&self) -> Arc<FunctionRegistry> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds `function`; a second one with the same id is a conflict and changes nothing.
    pub(crate) fn register(&self, function: Function) -> Result<()> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut next = FunctionRegistry::clone(&guard);
        next.register(function)?;
        *guard = Arc::new(next);
        Ok(())
    }
}
