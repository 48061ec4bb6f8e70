//! The app's functions, by id and by triggering event.

use std::collections::BTreeMap;
use std::sync::Arc;

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
