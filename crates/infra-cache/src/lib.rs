#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "memory", test))]
mod algorithm;
#[cfg(any(feature = "redis", feature = "memory", feature = "upstash"))]
mod cache_metrics;
mod config;
#[cfg(any(feature = "redis", feature = "upstash"))]
mod key_space;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "memory")]
mod memory_limiter;
#[cfg(any(feature = "redis", feature = "memory", feature = "upstash"))]
mod probe;
#[cfg(feature = "redis")]
mod redis_cache;
#[cfg(feature = "redis-cluster")]
mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_error;
#[cfg(feature = "redis")]
mod redis_key;
#[cfg(feature = "redis")]
mod redis_pool;
#[cfg(any(feature = "redis", feature = "upstash"))]
pub mod redis_scripts;
mod service;
mod single_flight;
mod tags;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower_layer;
#[cfg(feature = "upstash")]
mod upstash_cache;
#[cfg(feature = "upstash")]
mod upstash_error;
#[cfg(feature = "upstash")]
mod upstash_protocol;

pub use config::{
    CacheBackendConfig, CacheConfig, FailurePolicy, MemoryConfig, REDIS_CLUSTER_NODES_VARIABLE,
    REDIS_CLUSTER_READ_FROM_REPLICAS_VARIABLE, REDIS_URL_VARIABLES, RateLimitAlgorithm,
    RedisClusterConfig, RedisConfig, UPSTASH_TOKEN_VARIABLE, UPSTASH_URL_VARIABLE, UpstashConfig,
};
#[cfg(feature = "memory")]
pub use memory::MemoryCache;
#[cfg(feature = "redis")]
pub use redis_cache::RedisCache;
#[cfg(feature = "redis-cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
pub use redis_cluster::RedisClusterCache;
pub use service::CacheService;
pub use single_flight::{EarlyRefresh, SingleFlight};
pub use tags::{MAX_TAG_BYTES, TAG_KEY_PREFIX, TaggedCache, TaggedCacheExt};
#[cfg(feature = "upstash")]
#[cfg_attr(docsrs, doc(cfg(feature = "upstash")))]
pub use upstash_cache::UpstashRestCache;

#[cfg(feature = "redis")]
pub use deadpool_redis;
#[cfg(feature = "memory")]
pub use moka;
#[cfg(feature = "redis")]
pub use redis;
#[cfg(feature = "upstash")]
pub use reqwest;
