//! Skeleton: filled in by the infra-db issue.

use async_trait::async_trait;
use infra_core::{Env, Error, HealthCheck, Probe, Result};

/// A pooled PostgreSQL database.
#[derive(Clone)]
pub struct Database {}

impl Database {
    /// Builds the pool from `DATABASE_URL` and friends.
    pub fn from_env(_env: &Env) -> Result<Self> {
        Err(Error::backend("infra-db is not built yet"))
    }
}

#[async_trait]
impl HealthCheck for Database {
    fn service(&self) -> &str {
        "database"
    }
    fn backend(&self) -> &str {
        "postgres"
    }
    async fn probe(&self) -> Result<Probe> {
        Err(Error::backend("infra-db is not built yet"))
    }
}
