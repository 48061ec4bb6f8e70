//! Settings of `RedisClusterCache`, read from `REDIS_CLUSTER_NODES` and the variables it shares
//! with the single-server backend.

use std::fmt;
use std::time::Duration;

use infra_core::{Env, Error, Result, Secret, redact_url};

use super::FailurePolicy;

/// The variable listing a Redis Cluster's seed nodes: comma-separated `redis://` or
/// `rediss://` URLs. When set it selects `RedisClusterCache`, before `REDIS_URL`.
pub const REDIS_CLUSTER_NODES_VARIABLE: &str = "REDIS_CLUSTER_NODES";

/// The variable turning reads from replicas on (`true`/`false`, default `false`).
pub const REDIS_CLUSTER_READ_FROM_REPLICAS_VARIABLE: &str = "REDIS_CLUSTER_READ_FROM_REPLICAS";

/// Settings of [`RedisClusterCache`](crate::RedisClusterCache).
///
/// The seed nodes are where the client first asks for the cluster's slot map; it then talks to
/// every master (and, with [`read_from_replicas`](Self::read_from_replicas), replicas) it
/// learns of, and follows `MOVED`/`ASK` redirections and failovers by itself. A password and
/// TLS (`rediss://`) come from the URLs, as for `REDIS_URL`: every node is reached the same way.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisClusterConfig {
    /// Seed node URLs (may hold a password).
    pub nodes: Vec<Secret<String>>,
    /// The variable the nodes came from, named by errors about them.
    pub nodes_variable: &'static str,
    /// Prepended to every key (`REDIS_KEY_PREFIX`). It may not hold `{` or `}`: a hash tag in
    /// the prefix would put every key of the app in one slot, on one master.
    pub key_prefix: String,
    /// Most cluster connections in the pool (`REDIS_POOL_SIZE`, default 16); each holds a
    /// multiplexed connection to every node it uses.
    pub pool_size: usize,
    /// Deadline of every call, redirections and retries included (`REDIS_COMMAND_TIMEOUT`,
    /// default 1s).
    pub command_timeout: Duration,
    /// Deadline of opening the pool's cluster connection (`REDIS_CONNECT_TIMEOUT`, default
    /// 2s).
    pub connect_timeout: Duration,
    /// What the rate limiter answers during an outage (`INFRA_RATE_LIMIT_FAILURE_POLICY`).
    pub failure_policy: FailurePolicy,
    /// Whether reads (`get`, `get_many`, `exists`, `ttl`) may go to a replica
    /// (`REDIS_CLUSTER_READ_FROM_REPLICAS`, default off). Replication is asynchronous: a read
    /// from a replica may miss a write acknowledged a moment before. Writes, deletes, rate-limit
    /// decisions, tags and the health probe always go to the masters.
    pub read_from_replicas: bool,
}

impl RedisClusterConfig {
    /// Defaults for the seed node URLs; refuses an empty list, a URL that is not `redis://` or
    /// `rediss://`, a mix of the two, nodes with different passwords, or a database other
    /// than 0.
    pub fn new<I, S>(nodes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let raw: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        Ok(RedisClusterConfig {
            nodes: check_nodes(REDIS_CLUSTER_NODES_VARIABLE, &raw)?,
            nodes_variable: REDIS_CLUSTER_NODES_VARIABLE,
            key_prefix: String::new(),
            pool_size: 16,
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            failure_policy: FailurePolicy::Open,
            read_from_replicas: false,
        })
    }

    /// Sets the key prefix (checked when the cache is built: no `{` or `}`).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the most connections in the pool.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets the command timeout.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets the failure policy.
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Lets reads go to replicas.
    pub fn with_read_from_replicas(mut self, read_from_replicas: bool) -> Self {
        self.read_from_replicas = read_from_replicas;
        self
    }

    /// Refuses a prefix holding a hash tag's braces, naming `REDIS_KEY_PREFIX`.
    pub(crate) fn check_prefix(&self) -> Result<()> {
        if self.key_prefix.contains(['{', '}']) {
            return Err(Error::config(
                "REDIS_KEY_PREFIX",
                format_args!(
                    "must not contain `{{` or `}}` with {}: a hash tag in the prefix would put \
                     every key in one slot, on one master",
                    self.nodes_variable
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for RedisClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| redact_url(n.expose())).collect();
        f.debug_struct("RedisClusterConfig")
            .field("nodes", &nodes)
            .field("nodes_variable", &self.nodes_variable)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("failure_policy", &self.failure_policy)
            .field("read_from_replicas", &self.read_from_replicas)
            .finish()
    }
}

/// Reads `REDIS_CLUSTER_NODES` (the caller saw it set) and the settings shared with Redis.
pub(super) fn from_env(env: &Env, shared: super::Shared) -> Result<RedisClusterConfig> {
    let variable = REDIS_CLUSTER_NODES_VARIABLE;
    let raw = env.list(variable);
    let mut config = RedisClusterConfig {
        nodes: check_nodes(variable, &raw)?,
        nodes_variable: variable,
        key_prefix: shared.key_prefix,
        pool_size: 16,
        command_timeout: shared.command_timeout,
        connect_timeout: shared.connect_timeout.unwrap_or(Duration::from_secs(2)),
        failure_policy: shared.failure_policy,
        read_from_replicas: env
            .bool(REDIS_CLUSTER_READ_FROM_REPLICAS_VARIABLE)?
            .unwrap_or(false),
    };
    if let Some(size) = env.integer::<usize>("REDIS_POOL_SIZE")? {
        if size == 0 {
            return Err(Error::config("REDIS_POOL_SIZE", "must be at least 1"));
        }
        config.pool_size = size;
    }
    config.check_prefix()?;
    Ok(config)
}

/// Checks the seed URLs, and gives the credentials of the nodes that carry them to those that
/// do not (the client uses one password for every node). Errors name `variable` and never
/// echo a URL.
fn check_nodes(variable: &str, raw: &[String]) -> Result<Vec<Secret<String>>> {
    if raw.is_empty() {
        return Err(Error::config(
            variable,
            "must list at least one redis:// or rediss:// node",
        ));
    }
    let mut urls = Vec::with_capacity(raw.len());
    for (i, node) in raw.iter().enumerate() {
        let n = i + 1;
        let url = url::Url::parse(node.trim()).map_err(|e| {
            Error::config(variable, format_args!("node {n} is not a valid URL: {e}"))
        })?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(Error::config(
                variable,
                format_args!(
                    "node {n} must be a redis:// or rediss:// URL, not {}://",
                    url.scheme()
                ),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::config(
                variable,
                format_args!("node {n} has no host"),
            ));
        }
        if !matches!(url.path(), "" | "/" | "/0") {
            return Err(Error::config(
                variable,
                format_args!("node {n} names a database; Redis Cluster has only database 0"),
            ));
        }
        urls.push(url);
    }
    if urls.iter().any(|u| u.scheme() != urls[0].scheme()) {
        return Err(Error::config(
            variable,
            "mixes redis:// and rediss:// nodes; every node is reached the same way",
        ));
    }
    let credentials = |u: &url::Url| {
        u.password()
            .map(|p| (u.username().to_owned(), p.to_owned()))
    };
    let mut shared = None;
    for url in &urls {
        if let Some(found) = credentials(url) {
            match &shared {
                None => shared = Some(found),
                Some(first) if *first != found => {
                    return Err(Error::config(
                        variable,
                        "holds nodes with different credentials; the cluster client uses one \
                         user and password for every node",
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(urls
        .into_iter()
        .map(|mut url| {
            if let (Some((user, password)), None) = (&shared, url.password()) {
                let _ = url.set_username(user);
                let _ = url.set_password(Some(password));
            }
            Secret::new(url.to_string())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheBackendConfig, CacheConfig};

    #[test]
    fn nodes_select_the_cluster_before_redis_url() {
        let env = Env::from_pairs([
            (
                REDIS_CLUSTER_NODES_VARIABLE,
                "redis://:pw@10.0.0.1:7000, redis://10.0.0.2:7000,redis://10.0.0.3:7000",
            ),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_KEY_PREFIX", "app:"),
            ("REDIS_COMMAND_TIMEOUT", "250ms"),
            ("REDIS_POOL_SIZE", "4"),
            (REDIS_CLUSTER_READ_FROM_REPLICAS_VARIABLE, "yes"),
        ]);
        let CacheBackendConfig::RedisCluster(cluster) =
            CacheConfig::from_env(&env).unwrap().backend
        else {
            panic!("the cluster is selected")
        };
        assert_eq!(cluster.nodes.len(), 3);
        assert_eq!(cluster.key_prefix, "app:");
        assert_eq!(cluster.command_timeout, Duration::from_millis(250));
        assert_eq!(cluster.pool_size, 4);
        assert!(cluster.read_from_replicas);
        // The password reaches every node; Debug shows none of it.
        assert!(
            cluster
                .nodes
                .iter()
                .all(|n| n.expose().starts_with("redis://:pw@"))
        );
        let printed = format!("{cluster:?}");
        assert!(!printed.contains("pw@"), "{printed}");
    }

    #[test]
    fn replicas_are_off_by_default() {
        let env = Env::from_pairs([(REDIS_CLUSTER_NODES_VARIABLE, "rediss://cache:7000")]);
        let CacheBackendConfig::RedisCluster(cluster) =
            CacheConfig::from_env(&env).unwrap().backend
        else {
            panic!("the cluster is selected")
        };
        assert!(!cluster.read_from_replicas);
        assert_eq!(cluster.command_timeout, Duration::from_secs(1));
    }

    #[test]
    fn bad_nodes_and_prefixes_name_the_variable_without_echoing_urls() {
        for (pairs, variable, says) in [
            (
                vec![(REDIS_CLUSTER_NODES_VARIABLE, " , ")],
                REDIS_CLUSTER_NODES_VARIABLE,
                "at least one",
            ),
            (
                vec![(
                    REDIS_CLUSTER_NODES_VARIABLE,
                    "redis://a:7000,https://b:7000",
                )],
                REDIS_CLUSTER_NODES_VARIABLE,
                "node 2 must be a redis://",
            ),
            (
                vec![(
                    REDIS_CLUSTER_NODES_VARIABLE,
                    "redis://:pw@a:7000,rediss://b:7000",
                )],
                REDIS_CLUSTER_NODES_VARIABLE,
                "mixes",
            ),
            (
                vec![(
                    REDIS_CLUSTER_NODES_VARIABLE,
                    "redis://:pw@a:7000,redis://:other-pw@b:7000",
                )],
                REDIS_CLUSTER_NODES_VARIABLE,
                "different credentials",
            ),
            (
                vec![(REDIS_CLUSTER_NODES_VARIABLE, "redis://:pw@a:7000/3")],
                REDIS_CLUSTER_NODES_VARIABLE,
                "database 0",
            ),
            (
                vec![(REDIS_CLUSTER_NODES_VARIABLE, "not a url")],
                REDIS_CLUSTER_NODES_VARIABLE,
                "node 1 is not a valid URL",
            ),
            (
                vec![
                    (REDIS_CLUSTER_NODES_VARIABLE, "redis://a:7000"),
                    ("REDIS_KEY_PREFIX", "app:{tenant}:"),
                ],
                "REDIS_KEY_PREFIX",
                "one slot",
            ),
            (
                vec![
                    (REDIS_CLUSTER_NODES_VARIABLE, "redis://a:7000"),
                    (REDIS_CLUSTER_READ_FROM_REPLICAS_VARIABLE, "sometimes"),
                ],
                REDIS_CLUSTER_READ_FROM_REPLICAS_VARIABLE,
                "boolean",
            ),
            (
                vec![
                    (REDIS_CLUSTER_NODES_VARIABLE, "redis://a:7000"),
                    ("REDIS_POOL_SIZE", "0"),
                ],
                "REDIS_POOL_SIZE",
                "at least 1",
            ),
        ] {
            let err = CacheConfig::from_env(&Env::from_pairs(pairs.clone())).unwrap_err();
            assert_eq!(err.variable(), Some(variable), "{pairs:?}: {err}");
            assert!(err.to_string().contains(says), "{err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn new_checks_the_nodes_too() {
        assert!(RedisClusterConfig::new(Vec::<String>::new()).is_err());
        let config = RedisClusterConfig::new(["redis://127.0.0.1:7000"]).unwrap();
        assert_eq!(config.nodes_variable, REDIS_CLUSTER_NODES_VARIABLE);
        assert!(
            config
                .clone()
                .with_key_prefix("a{b")
                .check_prefix()
                .is_err()
        );
        assert!(config.with_key_prefix("app:").check_prefix().is_ok());
    }
}
