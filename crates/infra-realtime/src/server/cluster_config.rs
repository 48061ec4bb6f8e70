//! Settings of a server that shares its channels with other nodes over Redis.
//!
//! Compiled with the `server` feature alone so a configured `INFRA_REALTIME_REDIS_URL` on a
//! build without `server-redis` is an error naming the variable, not silently a single node.

use std::fmt;
use std::time::Duration;

use infra_core::{Env, Error, Result, Secret};

/// The variable naming the Redis the nodes share.
pub const REDIS_URL_VAR: &str = "INFRA_REALTIME_REDIS_URL";
const PREFIX_VAR: &str = "INFRA_REALTIME_REDIS_PREFIX";
const NODE_ID_VAR: &str = "INFRA_REALTIME_NODE_ID";
const LEASE_VAR: &str = "INFRA_REALTIME_NODE_LEASE";

/// Default key and pub/sub channel prefix.
pub const DEFAULT_PREFIX: &str = "infra-realtime";
/// Default lease: survivors clean a silent node up within this (plus one heartbeat).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// Shortest lease accepted: below it a busy Redis or a GC pause would look like death.
const MIN_LEASE: Duration = Duration::from_millis(300);

/// How this node joins the others.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// `redis://` or `rediss://` URL (may hold a password: never logged).
    pub redis_url: Secret<String>,
    /// Prepended to every key and to the pub/sub channel, so clusters can share a Redis.
    pub key_prefix: String,
    /// This node's name in Redis; unique among live nodes. Defaults to a random one.
    pub node_id: String,
    /// How long this node counts as alive without a heartbeat; heartbeats come every third.
    pub lease: Duration,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &self.redis_url)
            .field("key_prefix", &self.key_prefix)
            .field("node_id", &self.node_id)
            .field("lease", &self.lease)
            .finish()
    }
}

impl ClusterConfig {
    /// Nodes sharing `redis_url` under the default prefix, with a random node id.
    pub fn new(redis_url: impl Into<String>) -> Result<Self> {
        let redis_url = redis_url.into();
        check_url(&redis_url)?;
        Ok(ClusterConfig {
            redis_url: Secret::new(redis_url),
            key_prefix: DEFAULT_PREFIX.to_owned(),
            node_id: random_node_id(),
            lease: DEFAULT_LEASE,
        })
    }

    /// Replaces the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Replaces the node id.
    pub fn with_node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = node_id.into();
        self
    }

    /// Replaces the lease (at least 300 ms).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(MIN_LEASE);
        self
    }

    /// How often the lease is renewed and dead nodes are looked for.
    pub fn heartbeat(&self) -> Duration {
        self.lease / 3
    }

    /// `INFRA_REALTIME_REDIS_URL` with `INFRA_REALTIME_REDIS_PREFIX`, `INFRA_REALTIME_NODE_ID`
    /// and `INFRA_REALTIME_NODE_LEASE`; `Ok(None)` when the URL is unset (a single node).
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        let Some(url) = env.optional_secret(REDIS_URL_VAR) else {
            return Ok(None);
        };
        let mut config = ClusterConfig::new(url.into_inner())?;
        if let Some(prefix) = env.optional(PREFIX_VAR) {
            config.key_prefix = prefix;
        }
        if let Some(node_id) = env.optional(NODE_ID_VAR) {
            config.node_id = node_id;
        }
        if let Some(lease) = env.duration(LEASE_VAR)? {
            if lease < MIN_LEASE {
                return Err(Error::config(LEASE_VAR, "must be at least 300ms"));
            }
            config.lease = lease;
        }
        config.check()?;
        Ok(Some(config))
    }

    /// Names that end up inside Redis keys must not hold the separators the keys use.
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ');
        if bad(&self.key_prefix) {
            return Err(Error::config(
                PREFIX_VAR,
                "must be non-empty, without spaces or control characters",
            ));
        }
        if bad(&self.node_id) || self.node_id.len() > 128 {
            return Err(Error::config(
                NODE_ID_VAR,
                "must be 1-128 characters, without spaces or control characters",
            ));
        }
        Ok(())
    }
}

fn check_url(raw: &str) -> Result<()> {
    let url = infra_core::parse_url(REDIS_URL_VAR, raw)?;
    match url.scheme() {
        "redis" | "rediss" => Ok(()),
        other => Err(Error::config(
            REDIS_URL_VAR,
            format_args!("must be a redis:// or rediss:// URL, not {other}://"),
        )),
    }
}

fn random_node_id() -> String {
    format!("node-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_the_environment() {
        assert!(ClusterConfig::from_env(&Env::empty()).unwrap().is_none());
        let env = Env::from_pairs([
            (REDIS_URL_VAR, "redis://:hunter2@127.0.0.1:6379/0"),
            (PREFIX_VAR, "rt-test"),
            (NODE_ID_VAR, "a"),
            (LEASE_VAR, "2s"),
        ]);
        let config = ClusterConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(config.key_prefix, "rt-test");
        assert_eq!(config.node_id, "a");
        assert_eq!(config.lease, Duration::from_secs(2));
        assert!(!format!("{config:?}").contains("hunter2"));

        let http = Env::from_pairs([(REDIS_URL_VAR, "http://:hunter2@h/")]);
        let err = ClusterConfig::from_env(&http).unwrap_err();
        assert_eq!(err.variable(), Some(REDIS_URL_VAR));
        assert!(!err.to_string().contains("hunter2"));
        let short = Env::from_pairs([(REDIS_URL_VAR, "redis://h"), (LEASE_VAR, "10ms")]);
        assert_eq!(
            ClusterConfig::from_env(&short).unwrap_err().variable(),
            Some(LEASE_VAR)
        );
        let spaced = Env::from_pairs([(REDIS_URL_VAR, "redis://h"), (NODE_ID_VAR, "a b")]);
        assert_eq!(
            ClusterConfig::from_env(&spaced).unwrap_err().variable(),
            Some(NODE_ID_VAR)
        );
    }
}
