//! Settings of a server that shares its channels with other nodes over Redis.
//!
//! Compiled with the `server` feature alone so a configured `INFRA_REALTIME_REDIS_URL` on a
//! build without `server-redis` is an error naming the variable, not silently a single node.

use std::fmt;
use std::time::Duration;

use infra_core::{Env, Error, Result, Secret};

/// The variable naming the Redis the nodes share.
pub const REDIS_URL_VAR: &str = "INFRA_REALTIME_REDIS_URL";
/// The variable naming the seed nodes of the Redis Cluster the nodes share, comma-separated.
pub const REDIS_CLUSTER_NODES_VAR: &str = "INFRA_REALTIME_REDIS_CLUSTER_NODES";
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
    /// `redis://` or `rediss://` URL (may hold a password: never logged); on Redis Cluster the
    /// first seed node.
    pub redis_url: Secret<String>,
    /// Redis Cluster's seed nodes (`redis://` or `rediss://`), when the nodes share a cluster
    /// rather than one server: the bus then runs over sharded pub/sub (Redis ≥ 7).
    pub cluster_nodes: Option<Secret<Vec<String>>>,
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
            .field("cluster_nodes", &self.cluster_nodes)
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
        check_url(REDIS_URL_VAR, &redis_url)?;
        Ok(ClusterConfig {
            redis_url: Secret::new(redis_url),
            cluster_nodes: None,
            key_prefix: DEFAULT_PREFIX.to_owned(),
            node_id: random_node_id(),
            lease: DEFAULT_LEASE,
        })
    }

    /// Nodes sharing the Redis Cluster reached through the seed nodes `nodes`, under the
    /// default prefix, with a random node id.
    pub fn redis_cluster<I, S>(nodes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let Some(first) = nodes.first() else {
            return Err(Error::config(
                REDIS_CLUSTER_NODES_VAR,
                "names no node: give comma-separated redis:// or rediss:// seed nodes",
            ));
        };
        for node in &nodes {
            check_url(REDIS_CLUSTER_NODES_VAR, node)?;
        }
        Ok(ClusterConfig {
            redis_url: Secret::new(first.clone()),
            cluster_nodes: Some(Secret::new(nodes)),
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

    /// `INFRA_REALTIME_REDIS_URL` (one server) or `INFRA_REALTIME_REDIS_CLUSTER_NODES` (Redis
    /// Cluster's seed nodes, comma-separated) with `INFRA_REALTIME_REDIS_PREFIX`,
    /// `INFRA_REALTIME_NODE_ID` and `INFRA_REALTIME_NODE_LEASE`; `Ok(None)` when neither is set
    /// (a single node).
    pub fn from_env(env: &Env) -> Result<Option<Self>> {
        let url = env.optional_secret(REDIS_URL_VAR);
        let nodes = env.optional_secret(REDIS_CLUSTER_NODES_VAR);
        let mut config = match (url, nodes) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    REDIS_CLUSTER_NODES_VAR,
                    format_args!("and {REDIS_URL_VAR} are both set: set one of them"),
                ));
            }
            (Some(url), None) => ClusterConfig::new(url.into_inner())?,
            (None, Some(nodes)) => ClusterConfig::redis_cluster(
                nodes
                    .expose()
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty()),
            )?,
        };
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
        // Braces would move the hash tags that keep each script's keys in one cluster slot.
        let braces = |s: &str| s.contains(['{', '}']);
        if bad(&self.key_prefix) || braces(&self.key_prefix) {
            return Err(Error::config(
                PREFIX_VAR,
                "must be non-empty, without spaces, braces or control characters",
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

fn check_url(variable: &'static str, raw: &str) -> Result<()> {
    let url = infra_core::parse_url(variable, raw)?;
    match url.scheme() {
        "redis" | "rediss" => Ok(()),
        other => Err(Error::config(
            variable,
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

    #[test]
    fn a_redis_cluster_from_the_environment() {
        let env = Env::from_pairs([(
            REDIS_CLUSTER_NODES_VAR,
            "redis://:hunter2@127.0.0.1:7000, redis://:hunter2@127.0.0.1:7001",
        )]);
        let config = ClusterConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(config.cluster_nodes.as_ref().unwrap().expose().len(), 2);
        assert!(!format!("{config:?}").contains("hunter2"));

        let both = Env::from_pairs([
            (REDIS_CLUSTER_NODES_VAR, "redis://127.0.0.1:7000"),
            (REDIS_URL_VAR, "redis://127.0.0.1:6379"),
        ]);
        let err = ClusterConfig::from_env(&both).unwrap_err();
        assert_eq!(err.variable(), Some(REDIS_CLUSTER_NODES_VAR));
        let empty = Env::from_pairs([(REDIS_CLUSTER_NODES_VAR, " , ")]);
        let err = ClusterConfig::from_env(&empty).unwrap_err();
        assert_eq!(err.variable(), Some(REDIS_CLUSTER_NODES_VAR));
        let http = Env::from_pairs([(REDIS_CLUSTER_NODES_VAR, "redis://h:1,http://:hunter2@h/")]);
        let err = ClusterConfig::from_env(&http).unwrap_err();
        assert_eq!(err.variable(), Some(REDIS_CLUSTER_NODES_VAR));
        assert!(!err.to_string().contains("hunter2"));
        let braced = Env::from_pairs([(REDIS_URL_VAR, "redis://h"), (PREFIX_VAR, "a{b}")]);
        assert_eq!(
            ClusterConfig::from_env(&braced).unwrap_err().variable(),
            Some(PREFIX_VAR)
        );
    }
}
