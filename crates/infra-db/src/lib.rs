#![doc = include_str!("../README.md")]

mod config;
#[cfg(feature = "postgres")]
mod connection;
#[cfg(feature = "postgres")]
mod connection_manager;
#[cfg(feature = "postgres")]
mod database;
#[cfg(feature = "postgres")]
mod error;
#[cfg(feature = "postgres")]
mod migrations;
mod pagination;
#[cfg(feature = "postgres")]
mod pool_metrics;
#[cfg(feature = "postgres")]
mod replicas;
#[cfg(feature = "postgres")]
mod session;
#[cfg(feature = "postgres")]
mod tls;
#[cfg(feature = "postgres")]
mod transaction;

pub use config::DbConfig;
#[cfg(feature = "postgres")]
pub use connection::{DbConnection, DbField, DbRow, DbRows};
#[cfg(feature = "postgres")]
pub use connection_manager::{ConnectionManager, Pool, PooledConnection};
#[cfg(feature = "postgres")]
pub use database::Database;
#[cfg(feature = "postgres")]
pub use error::{
    DEADLOCK_DETECTED, SERIALIZATION_FAILURE, is_retryable_sqlstate,
    is_retryable_transaction_error, map_connection_error, map_diesel_error, map_pool_error,
    sqlstate,
};
/// The retry policy [`Database::transaction`] takes: the workspace's one, from infra-core.
#[cfg(feature = "postgres")]
pub use infra_core::RetryPolicy;
#[cfg(feature = "postgres")]
pub use migrations::{
    MIGRATION_LOCK_KEY, MigrationStatus, migration_status, run_pending_migrations,
};
pub use pagination::{Keyset, MAX_TAKE, Page};
#[cfg(feature = "postgres")]
pub use tls::SslMode;
#[cfg(feature = "postgres")]
pub use transaction::{DEFAULT_TRANSACTION_RETRY, Isolation};

#[cfg(feature = "postgres")]
pub use diesel;
#[cfg(feature = "postgres")]
pub use diesel_async;
#[cfg(feature = "postgres")]
pub use diesel_migrations;
