//! The Redis Cluster backend: `RedisClusterCache`.
//!
//! - `cache`: the type, its command path (one routed command per call, leased cluster
//!   connections, a deadline on every call) and the `Cache` and `RateLimiter` impls;
//! - `key_slot`: slots and the hash-tagged keys of operations touching several keys;
//! - `tags`: `TaggedCache`, with tag sets in slots of their own;
//! - `topology`: `CLUSTER NODES` and `CLUSTER SLOTS` read for the health check and for walking
//!   every master;
//! - `health`: the `HealthCheck`.

mod cache;
mod health;
mod key_slot;
mod tags;
mod topology;

pub use cache::RedisClusterCache;
