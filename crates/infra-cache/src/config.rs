//! Cache and rate-limit settings, read from the environment in one place.

use std::fmt;
use std::time::Duration;

use infra_core::{Env, Error, RateLimitDecision, Result, Secret, redact_url};

mod redis_cluster;

pub use redis_cluster::{
    REDIS_CLUSTER_NODES_VARIABLE, REDIS_CLUSTER_READ_FROM_REPLICAS_VARIABLE, RedisClusterConfig,
};

/// Variables that may hold the cache's URL, in order of preference. `REDIS_URL` holds a
/// `redis://`/`rediss://` URL; the TypeScript module's `UPSTASH_REDIS_REST_URL` holds either
/// Upstash's `https://` REST endpoint (selecting `UpstashRestCache`) or a Redis URL.
pub const REDIS_URL_VARIABLES: [&str; 2] = ["REDIS_URL", UPSTASH_URL_VARIABLE];

/// The TypeScript module's name of Upstash's REST endpoint.
pub const UPSTASH_URL_VARIABLE: &str = "UPSTASH_REDIS_REST_URL";

/// The TypeScript module's name of Upstash's REST token (and, with a Redis URL there, the
/// password).
pub const UPSTASH_TOKEN_VARIABLE: &str = "UPSTASH_REDIS_REST_TOKEN";

/// Which counting algorithm a rate limiter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RateLimitAlgorithm {
    /// Counts calls per fixed window: cheap; allows bursts of up to 2× at window edges.
    FixedWindow,
    /// Weighs the previous window's count by how much of it still overlaps (as
    /// @upstash/ratelimit does): smooth, one counter pair per key.
    #[default]
    SlidingWindow,
    /// GCRA, a token bucket holding `limit` tokens refilled over `window`: smooth, allows
    /// bursts of `limit`.
    TokenBucket,
}

impl RateLimitAlgorithm {
    /// Every algorithm, for tests and benchmarks.
    pub const ALL: [RateLimitAlgorithm; 3] = [
        RateLimitAlgorithm::FixedWindow,
        RateLimitAlgorithm::SlidingWindow,
        RateLimitAlgorithm::TokenBucket,
    ];

    /// The name used in `INFRA_RATE_LIMIT_ALGORITHM`.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitAlgorithm::FixedWindow => "fixed_window",
            RateLimitAlgorithm::SlidingWindow => "sliding_window",
            RateLimitAlgorithm::TokenBucket => "token_bucket",
        }
    }

    fn parse(variable: &str, raw: &str) -> Result<Self> {
        match raw.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "fixed" | "fixed_window" => Ok(RateLimitAlgorithm::FixedWindow),
            "sliding" | "sliding_window" => Ok(RateLimitAlgorithm::SlidingWindow),
            "token_bucket" | "gcra" => Ok(RateLimitAlgorithm::TokenBucket),
            _ => Err(Error::config(
                variable,
                format_args!("must be fixed_window, sliding_window or token_bucket, got `{raw}`"),
            )),
        }
    }
}

/// What the Redis rate limiter answers when Redis can't be reached.
///
/// The default is [`FailurePolicy::Open`]: a cache outage should degrade protection, not take
/// every rate-limited route down with it. Choose [`FailurePolicy::Closed`] where admitting
/// unchecked traffic is worse than refusing it (login attempts, paid API calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailurePolicy {
    /// Admit the call; the decision has `fallback: true`.
    #[default]
    Open,
    /// Refuse the call; the decision has `fallback: true`.
    Closed,
}

impl FailurePolicy {
    /// The decision this policy makes for a call the backend could not count.
    pub fn decide(self, limit: u64, window: Duration) -> RateLimitDecision {
        let allowed = self == FailurePolicy::Open;
        RateLimitDecision {
            allowed,
            limit,
            remaining: if allowed { limit } else { 0 },
            reset_after: window,
            fallback: true,
        }
    }

    /// `outcome` of a remote decision, unless the backend could not be reached (unavailable or
    /// timed out): then this policy decides, logged, and the decision says `fallback: true`.
    #[cfg_attr(not(any(feature = "redis", feature = "upstash")), allow(dead_code))]
    pub(crate) fn or_decide(
        self,
        outcome: Result<RateLimitDecision>,
        limit: u64,
        window: Duration,
    ) -> Result<RateLimitDecision> {
        match outcome {
            Err(err)
                if matches!(
                    err.kind(),
                    infra_core::ErrorKind::Unavailable | infra_core::ErrorKind::Timeout
                ) =>
            {
                tracing::warn!(error = %err, policy = ?self, "rate limiter falling back");
                Ok(self.decide(limit, window))
            }
            other => other,
        }
    }

    fn parse(variable: &str, raw: &str) -> Result<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "open" | "fail_open" | "fail-open" => Ok(FailurePolicy::Open),
            "closed" | "fail_closed" | "fail-closed" => Ok(FailurePolicy::Closed),
            _ => Err(Error::config(
                variable,
                format_args!("must be open or closed, got `{raw}`"),
            )),
        }
    }
}

/// Settings of [`RedisCache`](crate::RedisCache).
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL (may hold a password).
    pub url: Secret<String>,
    /// The variable the URL came from (`REDIS_URL` or `UPSTASH_REDIS_REST_URL`), named by
    /// errors about it.
    pub url_variable: &'static str,
    /// Prepended to every key (`REDIS_KEY_PREFIX`), so several apps can share one Redis.
    pub key_prefix: String,
    /// Most connections in the pool (`REDIS_POOL_SIZE`, default 16).
    pub pool_size: usize,
    /// Deadline of every command, pool wait included (`REDIS_COMMAND_TIMEOUT`, default 1s).
    pub command_timeout: Duration,
    /// Deadline of opening a connection (`REDIS_CONNECT_TIMEOUT`, default 2s).
    pub connect_timeout: Duration,
    /// What the rate limiter answers during an outage (`INFRA_RATE_LIMIT_FAILURE_POLICY`).
    pub failure_policy: FailurePolicy,
}

impl RedisConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: Secret::new(url.into()),
            url_variable: "REDIS_URL",
            key_prefix: String::new(),
            pool_size: 16,
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            failure_policy: FailurePolicy::Open,
        }
    }

    /// Sets the key prefix.
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
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(self.url.expose()))
            .field("url_variable", &self.url_variable)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("failure_policy", &self.failure_policy)
            .finish()
    }
}

/// Settings of `UpstashRestCache`: Upstash's REST endpoint and
/// token, and the settings it shares with Redis.
#[derive(Clone)]
#[non_exhaustive]
pub struct UpstashConfig {
    /// The REST endpoint: `https://…upstash.io` (`http://` only for a local stand-in).
    pub url: url::Url,
    /// The variable the URL came from, named by errors about it.
    pub url_variable: &'static str,
    /// The REST token, sent as `Authorization: Bearer …`.
    pub token: Secret<String>,
    /// The variable the token came from, named when Upstash refuses it.
    pub token_variable: &'static str,
    /// Prepended to every key (`REDIS_KEY_PREFIX`).
    pub key_prefix: String,
    /// Deadline of every request (`REDIS_COMMAND_TIMEOUT`, default 1s).
    pub command_timeout: Duration,
    /// Deadline of opening a connection (`REDIS_CONNECT_TIMEOUT`, default 2s).
    pub connect_timeout: Duration,
    /// What the rate limiter answers during an outage (`INFRA_RATE_LIMIT_FAILURE_POLICY`).
    pub failure_policy: FailurePolicy,
}

impl UpstashConfig {
    /// Defaults for `url` and `token`; refuses a URL that is not `https://` or `http://`.
    pub fn new(url: &str, token: impl Into<String>) -> Result<Self> {
        let url = rest_url(UPSTASH_URL_VARIABLE, url)?;
        let token = token.into();
        if token.trim().is_empty() {
            return Err(Error::config(UPSTASH_TOKEN_VARIABLE, "must not be empty"));
        }
        Ok(UpstashConfig {
            url,
            url_variable: UPSTASH_URL_VARIABLE,
            token: Secret::new(token),
            token_variable: UPSTASH_TOKEN_VARIABLE,
            key_prefix: String::new(),
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            failure_policy: FailurePolicy::Open,
        })
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the request timeout.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets the failure policy.
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }
}

impl fmt::Debug for UpstashConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstashConfig")
            .field("url", &redact_url(self.url.as_str()))
            .field("url_variable", &self.url_variable)
            .field("token", &self.token)
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("failure_policy", &self.failure_policy)
            .finish()
    }
}

/// Settings of [`MemoryCache`](crate::MemoryCache).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Bound on the total bytes of keys and values (`INFRA_CACHE_MAX_BYTES`, default 64 MiB).
    pub max_bytes: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The backend picked from the environment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CacheBackendConfig {
    /// Redis, when a `redis://`/`rediss://` URL is set.
    Redis(RedisConfig),
    /// Redis Cluster, when `REDIS_CLUSTER_NODES` is set.
    RedisCluster(RedisClusterConfig),
    /// Upstash's REST API, when `UPSTASH_REDIS_REST_URL` is an `https://` URL.
    Upstash(UpstashConfig),
    /// In memory otherwise.
    Memory(MemoryConfig),
}

/// Everything `CacheService::from_env` reads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Redis, Upstash REST or memory.
    pub backend: CacheBackendConfig,
    /// The rate limiter's algorithm (`INFRA_RATE_LIMIT_ALGORITHM`, default sliding window).
    pub algorithm: RateLimitAlgorithm,
}

impl CacheConfig {
    /// Reads `REDIS_CLUSTER_NODES` (Redis Cluster's seed nodes, with
    /// `REDIS_CLUSTER_READ_FROM_REPLICAS`), or else `REDIS_URL`, or else
    /// `UPSTASH_REDIS_REST_URL` (an `https://` REST endpoint with `UPSTASH_REDIS_REST_TOKEN`, or
    /// a Redis URL whose password the token supplies), `REDIS_KEY_PREFIX`, `REDIS_POOL_SIZE`,
    /// `REDIS_COMMAND_TIMEOUT`, `REDIS_CONNECT_TIMEOUT`, `INFRA_CACHE_MAX_BYTES`,
    /// `INFRA_RATE_LIMIT_ALGORITHM`, `INFRA_RATE_LIMIT_FAILURE_POLICY`. Errors about a URL name
    /// the variable it came from.
    pub fn from_env(env: &Env) -> Result<Self> {
        let algorithm = match env.get("INFRA_RATE_LIMIT_ALGORITHM") {
            Some(raw) => RateLimitAlgorithm::parse("INFRA_RATE_LIMIT_ALGORITHM", &raw)?,
            None => RateLimitAlgorithm::default(),
        };
        if env.is_set(REDIS_CLUSTER_NODES_VARIABLE) {
            let backend = CacheBackendConfig::RedisCluster(redis_cluster::from_env(
                env,
                Shared::from_env(env)?,
            )?);
            return Ok(CacheConfig { backend, algorithm });
        }
        let backend = match env.first_of(&REDIS_URL_VARIABLES) {
            Some((variable, raw)) => remote_config(env, variable, &raw)?,
            None => {
                let mut memory = MemoryConfig::default();
                if let Some(max) = env.integer::<u64>("INFRA_CACHE_MAX_BYTES")? {
                    if max < 1024 {
                        return Err(Error::config(
                            "INFRA_CACHE_MAX_BYTES",
                            "must be at least 1024",
                        ));
                    }
                    memory.max_bytes = max;
                }
                CacheBackendConfig::Memory(memory)
            }
        };
        Ok(CacheConfig { backend, algorithm })
    }
}

/// Settings both remote backends read.
struct Shared {
    key_prefix: String,
    command_timeout: Duration,
    connect_timeout: Option<Duration>,
    failure_policy: FailurePolicy,
}

impl Shared {
    fn from_env(env: &Env) -> Result<Self> {
        let command_timeout = match env.duration("REDIS_COMMAND_TIMEOUT")? {
            Some(t) if t.is_zero() => {
                return Err(Error::config(
                    "REDIS_COMMAND_TIMEOUT",
                    "must be greater than zero",
                ));
            }
            Some(t) => t,
            None => Duration::from_secs(1),
        };
        let failure_policy = match env.get("INFRA_RATE_LIMIT_FAILURE_POLICY") {
            Some(raw) => FailurePolicy::parse("INFRA_RATE_LIMIT_FAILURE_POLICY", &raw)?,
            None => FailurePolicy::default(),
        };
        Ok(Shared {
            key_prefix: env.get("REDIS_KEY_PREFIX").unwrap_or_default(),
            command_timeout,
            connect_timeout: env.duration("REDIS_CONNECT_TIMEOUT")?,
            failure_policy,
        })
    }
}

/// Redis or Upstash REST, by the URL's scheme; `variable` is where the URL came from.
fn remote_config(env: &Env, variable: &'static str, raw: &str) -> Result<CacheBackendConfig> {
    let url = infra_core::parse_url(variable, raw)?;
    match url.scheme() {
        "redis" | "rediss" => Ok(CacheBackendConfig::Redis(redis_config(env, variable, url)?)),
        "https" | "http" if variable == UPSTASH_URL_VARIABLE => Ok(CacheBackendConfig::Upstash(
            upstash_config(env, variable, raw)?,
        )),
        "https" | "http" => Err(Error::config(
            variable,
            "must be a redis:// or rediss:// URL; an Upstash REST endpoint (https://) goes in \
             UPSTASH_REDIS_REST_URL, with UPSTASH_REDIS_REST_TOKEN",
        )),
        other => Err(Error::config(
            variable,
            format_args!(
                "must be a redis:// or rediss:// URL{}, not {other}://",
                if variable == UPSTASH_URL_VARIABLE {
                    " or Upstash's https:// REST endpoint"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// Checks a REST endpoint URL: `https://` (or `http://`), a host, no credentials in it.
fn rest_url(variable: &str, raw: &str) -> Result<url::Url> {
    let url = infra_core::parse_url(variable, raw)?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(Error::config(
            variable,
            format_args!("must be an https:// URL, not {}://", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(variable, "has no host"));
    }
    let token_in_query = url.query_pairs().any(|(k, _)| k == "_token");
    if !url.username().is_empty() || url.password().is_some() || token_in_query {
        return Err(Error::config(
            variable,
            "must not hold credentials; the token goes in UPSTASH_REDIS_REST_TOKEN",
        ));
    }
    Ok(url)
}

fn upstash_config(env: &Env, variable: &'static str, raw: &str) -> Result<UpstashConfig> {
    let url = rest_url(variable, raw)?;
    let Some(token) = env
        .get(UPSTASH_TOKEN_VARIABLE)
        .filter(|t| !t.trim().is_empty())
    else {
        return Err(Error::config(
            UPSTASH_TOKEN_VARIABLE,
            format_args!("must be set when {variable} is Upstash's REST endpoint"),
        ));
    };
    let shared = Shared::from_env(env)?;
    Ok(UpstashConfig {
        url,
        url_variable: variable,
        token: Secret::new(token),
        token_variable: UPSTASH_TOKEN_VARIABLE,
        key_prefix: shared.key_prefix,
        command_timeout: shared.command_timeout,
        connect_timeout: shared.connect_timeout.unwrap_or(Duration::from_secs(2)),
        failure_policy: shared.failure_policy,
    })
}

fn redis_config(env: &Env, variable: &'static str, mut url: url::Url) -> Result<RedisConfig> {
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(variable, "has no host"));
    }
    let token = env.get(UPSTASH_TOKEN_VARIABLE);
    if let Some(token) =
        token.filter(|_| variable == UPSTASH_URL_VARIABLE && url.password().is_none())
    {
        let user = if url.username().is_empty() {
            "default".to_owned()
        } else {
            url.username().to_owned()
        };
        let _ = url.set_username(&user);
        let _ = url.set_password(Some(&token));
    }
    let mut config = RedisConfig::new(url.to_string());
    config.url_variable = variable;
    if let Some(size) = env.integer::<usize>("REDIS_POOL_SIZE")? {
        if size == 0 {
            return Err(Error::config("REDIS_POOL_SIZE", "must be at least 1"));
        }
        config.pool_size = size;
    }
    let shared = Shared::from_env(env)?;
    config.key_prefix = shared.key_prefix;
    config.command_timeout = shared.command_timeout;
    if let Some(t) = shared.connect_timeout {
        config.connect_timeout = t;
    }
    config.failure_policy = shared.failure_policy;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_without_url() {
        let cfg = CacheConfig::from_env(&Env::empty()).unwrap();
        assert!(matches!(cfg.backend, CacheBackendConfig::Memory(_)));
        assert_eq!(cfg.algorithm, RateLimitAlgorithm::SlidingWindow);
    }

    #[test]
    fn redis_url_and_settings() {
        let env = Env::from_pairs([
            ("REDIS_URL", "rediss://:hunter2@cache.example:6380/0"),
            ("REDIS_KEY_PREFIX", "app:"),
            ("REDIS_COMMAND_TIMEOUT", "250ms"),
            ("INFRA_RATE_LIMIT_ALGORITHM", "token-bucket"),
            ("INFRA_RATE_LIMIT_FAILURE_POLICY", "closed"),
        ]);
        let cfg = CacheConfig::from_env(&env).unwrap();
        assert_eq!(cfg.algorithm, RateLimitAlgorithm::TokenBucket);
        let CacheBackendConfig::Redis(redis) = cfg.backend else {
            panic!("redis")
        };
        assert_eq!(redis.key_prefix, "app:");
        assert_eq!(redis.command_timeout, Duration::from_millis(250));
        assert_eq!(redis.failure_policy, FailurePolicy::Closed);
        let printed = format!("{redis:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn upstash_aliases() {
        let env = Env::from_pairs([
            (
                "UPSTASH_REDIS_REST_URL",
                "rediss://eu1-fond-cat.upstash.io:6379",
            ),
            ("UPSTASH_REDIS_REST_TOKEN", "tok"),
        ]);
        let CacheBackendConfig::Redis(redis) = CacheConfig::from_env(&env).unwrap().backend else {
            panic!("redis")
        };
        assert_eq!(
            redis.url.expose(),
            "rediss://default:tok@eu1-fond-cat.upstash.io:6379"
        );

        assert_eq!(redis.url_variable, "UPSTASH_REDIS_REST_URL");
    }

    #[test]
    fn upstash_rest_endpoint_selects_the_rest_backend() {
        let env = Env::from_pairs([
            ("UPSTASH_REDIS_REST_URL", "https://eu1-fond-cat.upstash.io"),
            ("UPSTASH_REDIS_REST_TOKEN", "AX1-secret-token"),
            ("REDIS_KEY_PREFIX", "app:"),
            ("REDIS_COMMAND_TIMEOUT", "300ms"),
            ("INFRA_RATE_LIMIT_FAILURE_POLICY", "closed"),
        ]);
        let CacheBackendConfig::Upstash(upstash) = CacheConfig::from_env(&env).unwrap().backend
        else {
            panic!("upstash")
        };
        assert_eq!(upstash.url.as_str(), "https://eu1-fond-cat.upstash.io/");
        assert_eq!(upstash.token.expose(), "AX1-secret-token");
        assert_eq!(upstash.key_prefix, "app:");
        assert_eq!(upstash.command_timeout, Duration::from_millis(300));
        assert_eq!(upstash.failure_policy, FailurePolicy::Closed);
        let printed = format!("{upstash:?}");
        assert!(!printed.contains("AX1-secret-token"), "{printed}");

        // A local stand-in speaks plain HTTP.
        let env = Env::from_pairs([
            ("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:8079"),
            ("UPSTASH_REDIS_REST_TOKEN", "t"),
        ]);
        let backend = CacheConfig::from_env(&env).unwrap().backend;
        assert!(matches!(backend, CacheBackendConfig::Upstash(_)));

        // REDIS_URL wins over the Upstash name.
        let env = Env::from_pairs([
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("UPSTASH_REDIS_REST_URL", "https://eu1-fond-cat.upstash.io"),
        ]);
        let backend = CacheConfig::from_env(&env).unwrap().backend;
        assert!(matches!(backend, CacheBackendConfig::Redis(_)));
    }

    #[test]
    fn url_errors_name_the_variable_the_url_came_from() {
        for (pairs, variable, says) in [
            (
                vec![("UPSTASH_REDIS_REST_URL", "https://eu1-fond-cat.upstash.io")],
                "UPSTASH_REDIS_REST_TOKEN",
                "must be set",
            ),
            (
                vec![("UPSTASH_REDIS_REST_URL", "ftp://eu1-fond-cat.upstash.io")],
                "UPSTASH_REDIS_REST_URL",
                "https://",
            ),
            (
                vec![("UPSTASH_REDIS_REST_URL", "not a url")],
                "UPSTASH_REDIS_REST_URL",
                "",
            ),
            (
                vec![
                    (
                        "UPSTASH_REDIS_REST_URL",
                        "https://user:pw@eu1-fond-cat.upstash.io",
                    ),
                    ("UPSTASH_REDIS_REST_TOKEN", "t"),
                ],
                "UPSTASH_REDIS_REST_URL",
                "credentials",
            ),
            (
                vec![
                    (
                        "UPSTASH_REDIS_REST_URL",
                        "https://eu1-fond-cat.upstash.io/?_token=pw@",
                    ),
                    ("UPSTASH_REDIS_REST_TOKEN", "t"),
                ],
                "UPSTASH_REDIS_REST_URL",
                "credentials",
            ),
            (
                vec![("REDIS_URL", "https://eu1-fond-cat.upstash.io")],
                "REDIS_URL",
                "UPSTASH_REDIS_REST_URL",
            ),
            (vec![("REDIS_URL", "ftp://cache")], "REDIS_URL", "redis://"),
        ] {
            let err = CacheConfig::from_env(&Env::from_pairs(pairs.clone())).unwrap_err();
            assert_eq!(err.variable(), Some(variable), "{pairs:?}: {err}");
            assert!(err.to_string().contains(says), "{err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("REDIS_URL", "http://localhost"),
            ("REDIS_URL", "not a url"),
            ("REDIS_POOL_SIZE", "0"),
            ("REDIS_COMMAND_TIMEOUT", "fast"),
            ("INFRA_RATE_LIMIT_ALGORITHM", "leaky"),
            ("INFRA_RATE_LIMIT_FAILURE_POLICY", "maybe"),
        ] {
            let mut pairs = vec![(var, value)];
            if var != "REDIS_URL" {
                pairs.push(("REDIS_URL", "redis://127.0.0.1"));
            }
            let err = CacheConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.variable(), Some(var), "{err}");
        }
        let err =
            CacheConfig::from_env(&Env::from_pairs([("INFRA_CACHE_MAX_BYTES", "10")])).unwrap_err();
        assert_eq!(err.variable(), Some("INFRA_CACHE_MAX_BYTES"));
    }
}
