#![doc = include_str!("../README.md")]

mod config;
#[cfg(feature = "postgres")]
mod database;
#[cfg(feature = "postgres")]
mod error;

pub use config::DbConfig;
#[cfg(feature = "postgres")]
pub use database::{Database, PooledConnection};
#[cfg(feature = "postgres")]
pub use error::{map_connection_error, map_diesel_error, map_pool_error};

#[cfg(feature = "postgres")]
pub use diesel;
#[cfg(feature = "postgres")]
pub use diesel_async;
