//! Cache and rate-limit settings, read from the environment in one place.

use std::fmt;
use std::time::Duration;

use infra_core::{Env, Error, Result, Secret, redact_url};

/// Variables that may hold the Redis URL, in order of preference. The Upstash names are the
/// seed's; they are accepted when they hold a `redis://`/`rediss://` URL.
pub const REDIS_URL_VARIABLES: [&str; 2] = ["REDIS_URL", "UPSTASH_REDIS_REST_URL"];

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

/// Settings of [`RedisCache`](crate::RedisCache).
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL (may hold a password).
    pub url: Secret<String>,
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
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
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
    /// Redis, when a Redis URL is set.
    Redis(RedisConfig),
    /// In memory otherwise.
    Memory(MemoryConfig),
}

/// Everything `CacheService::from_env` reads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Redis or memory.
    pub backend: CacheBackendConfig,
    /// The rate limiter's algorithm (`INFRA_RATE_LIMIT_ALGORITHM`, default sliding window).
    pub algorithm: RateLimitAlgorithm,
}

impl CacheConfig {
    /// Reads `REDIS_URL` (or `UPSTASH_REDIS_REST_URL` holding a Redis URL, with
    /// `UPSTASH_REDIS_REST_TOKEN` as its password), `REDIS_KEY_PREFIX`, `REDIS_POOL_SIZE`,
    /// `REDIS_COMMAND_TIMEOUT`, `REDIS_CONNECT_TIMEOUT`, `INFRA_CACHE_MAX_BYTES`,
    /// `INFRA_RATE_LIMIT_ALGORITHM`, `INFRA_RATE_LIMIT_FAILURE_POLICY`.
    pub fn from_env(env: &Env) -> Result<Self> {
        let algorithm = match env.get("INFRA_RATE_LIMIT_ALGORITHM") {
            Some(raw) => RateLimitAlgorithm::parse("INFRA_RATE_LIMIT_ALGORITHM", &raw)?,
            None => RateLimitAlgorithm::default(),
        };
        let backend = match env.first_of(&REDIS_URL_VARIABLES) {
            Some((variable, raw)) => CacheBackendConfig::Redis(redis_config(env, variable, &raw)?),
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

fn redis_config(env: &Env, variable: &str, raw: &str) -> Result<RedisConfig> {
    let mut url = infra_core::parse_url(variable, raw)?;
    match url.scheme() {
        "redis" | "rediss" => {}
        "https" | "http" if variable.starts_with("UPSTASH") => {
            return Err(Error::config(
                variable,
                "holds Upstash's REST endpoint, which is not supported; set REDIS_URL to the \
                 database's rediss:// URL (Upstash console → Connect → Redis)",
            ));
        }
        other => {
            return Err(Error::config(
                variable,
                format_args!("must be a redis:// or rediss:// URL, not {other}://"),
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(variable, "has no host"));
    }
    let token = env.get("UPSTASH_REDIS_REST_TOKEN");
    if let Some(token) =
        token.filter(|_| variable.starts_with("UPSTASH") && url.password().is_none())
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
    config.key_prefix = env.get("REDIS_KEY_PREFIX").unwrap_or_default();
    if let Some(size) = env.integer::<usize>("REDIS_POOL_SIZE")? {
        if size == 0 {
            return Err(Error::config("REDIS_POOL_SIZE", "must be at least 1"));
        }
        config.pool_size = size;
    }
    if let Some(t) = env.duration("REDIS_COMMAND_TIMEOUT")? {
        if t.is_zero() {
            return Err(Error::config(
                "REDIS_COMMAND_TIMEOUT",
                "must be greater than zero",
            ));
        }
        config.command_timeout = t;
    }
    if let Some(t) = env.duration("REDIS_CONNECT_TIMEOUT")? {
        config.connect_timeout = t;
    }
    if let Some(raw) = env.get("INFRA_RATE_LIMIT_FAILURE_POLICY") {
        config.failure_policy = match raw.trim().to_ascii_lowercase().as_str() {
            "open" | "fail_open" | "fail-open" => FailurePolicy::Open,
            "closed" | "fail_closed" | "fail-closed" => FailurePolicy::Closed,
            _ => {
                return Err(Error::config(
                    "INFRA_RATE_LIMIT_FAILURE_POLICY",
                    format_args!("must be open or closed, got `{raw}`"),
                ));
            }
        };
    }
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

        let env = Env::from_pairs([("UPSTASH_REDIS_REST_URL", "https://eu1-fond-cat.upstash.io")]);
        let err = CacheConfig::from_env(&env).unwrap_err();
        assert_eq!(err.variable(), Some("UPSTASH_REDIS_REST_URL"));
        assert!(err.to_string().contains("set REDIS_URL"), "{err}");
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
