//! `RedisCache`: deadpool-redis, a namespace prefix, and a deadline on every command.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{Manager, Pool, Runtime};
use infra_core::{
    Cache, CacheLimits, Error, ErrorKind, HealthCheck, Probe, RateLimitDecision, RateLimiter,
    Result, check_rate_limit_args, redact_url,
};
use redis::{FromRedisValue, Script};

use crate::config::{FailurePolicy, RateLimitAlgorithm, RedisConfig};
use crate::redis_error::{map_pool_error, map_redis_error};
use crate::redis_scripts;

/// How many keys one `SCAN` step asks for while deleting by prefix.
const SCAN_COUNT: usize = 1000;

/// A cache and rate limiter on Redis.
///
/// Every call — waiting for a pooled connection included — is bounded by
/// `command_timeout`: a stalled Redis yields [`ErrorKind::Timeout`], never a hang. Broken
/// connections are dropped by the pool's recycle check, so the same `RedisCache` recovers when
/// Redis comes back.
pub struct RedisCache {
    pool: Pool,
    config: RedisConfig,
    limits: CacheLimits,
    algorithm: RateLimitAlgorithm,
    script: Script,
}

impl RedisCache {
    /// Builds the pool (no connection is opened until the first call).
    pub fn new(config: RedisConfig, algorithm: RateLimitAlgorithm) -> Result<Self> {
        let manager = Manager::new(config.url.expose().as_str())
            .map_err(|_| Error::config("REDIS_URL", "is not a valid Redis connection URL"))?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.command_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.command_timeout))
            .build()
            .map_err(|e| Error::backend(format!("cannot build the Redis pool: {e}")))?;
        let script = Script::new(&match algorithm {
            RateLimitAlgorithm::FixedWindow => redis_scripts::fixed_window(),
            RateLimitAlgorithm::SlidingWindow => redis_scripts::sliding_window(),
            RateLimitAlgorithm::TokenBucket => redis_scripts::token_bucket(),
        });
        Ok(RedisCache {
            pool,
            config,
            limits: CacheLimits::default(),
            algorithm,
            script,
        })
    }

    /// Replaces the input limits.
    pub fn with_limits(mut self, limits: CacheLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The underlying pool, for commands this API does not cover.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The rate limiter's algorithm.
    pub fn algorithm(&self) -> RateLimitAlgorithm {
        self.algorithm
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.config.key_prefix)
    }

    /// Checks a key, counting the namespace prefix against the limit.
    fn checked_key(&self, key: &str) -> Result<String> {
        self.limits.check_key(key)?;
        let full = self.key(key);
        self.limits.check_key(&full)?;
        Ok(full)
    }

    /// Runs `f` on a pooled connection within the command timeout.
    async fn with_conn<T, F, Fut>(&self, op: &str, f: F) -> Result<T>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let conn = self.pool.get().await.map_err(|e| map_pool_error(op, e))?;
            f(conn).await.map_err(|e| map_redis_error(op, e))
        };
        match tokio::time::timeout(self.config.command_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout(
                &format!("redis {op}"),
                self.config.command_timeout,
            )),
        }
    }

    async fn query<T: FromRedisValue + Send>(&self, op: &str, cmd: redis::Cmd) -> Result<T> {
        self.with_conn(
            op,
            |mut conn| async move { cmd.query_async(&mut conn).await },
        )
        .await
    }

    async fn rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateLimitDecision> {
        check_rate_limit_args(key, limit, window)?;
        let window_ms = (window.as_millis() as u64).max(1);
        let base = self.key(&format!(
            "rl:{}:{limit}:{window_ms}:{key}",
            self.algorithm.as_str()
        ));
        let mut invocation = self.script.prepare_invoke();
        invocation.key(base).arg(limit).arg(window_ms);
        let (allowed, remaining, reset_ms): (i64, i64, i64) = self
            .with_conn("EVALSHA", |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        Ok(RateLimitDecision {
            allowed: allowed == 1,
            limit,
            remaining: remaining.max(0) as u64,
            reset_after: Duration::from_millis(reset_ms.max(0) as u64),
            fallback: false,
        })
    }
}

/// `*`, `?`, `[`, `]` and `\` are glob syntax in `SCAN MATCH`; a prefix holding them must match
/// literally.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = self.checked_key(key)?;
        self.query("GET", redis::cmd("GET").arg(key).clone()).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let key = self.checked_key(key)?;
        self.limits.check_value(&key, value)?;
        self.limits.check_ttl(ttl)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        self.query::<()>("SET", cmd).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let key = self.checked_key(key)?;
        let removed: u64 = self
            .query("DEL", redis::cmd("DEL").arg(key).clone())
            .await?;
        Ok(removed > 0)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let key = self.checked_key(key)?;
        let n: u64 = self
            .query("EXISTS", redis::cmd("EXISTS").arg(key).clone())
            .await?;
        Ok(n > 0)
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        let key = self.checked_key(key)?;
        let ms: i64 = self
            .query("PTTL", redis::cmd("PTTL").arg(key).clone())
            .await?;
        // -2: no such key; -1: a key without expiry (written by something else).
        Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let full: Vec<String> = keys
            .iter()
            .map(|k| self.checked_key(k))
            .collect::<Result<_>>()?;
        if full.is_empty() {
            return Ok(Vec::new());
        }
        // MGET of one key answers a bare value, not an array: always send an array.
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&full);
        let values: Vec<Option<Vec<u8>>> = self.query("MGET", cmd).await?;
        Ok(values)
    }

    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration) -> Result<()> {
        self.limits.check_ttl(ttl)?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, value) in &entries {
            let full = self.checked_key(key)?;
            self.limits.check_value(key, value)?;
            pipe.cmd("SET")
                .arg(full)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore();
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.with_conn("MULTI SET", |mut conn| async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.limits.check_prefix(prefix)?;
        let pattern = format!("{}*", glob_escape(&self.key(prefix)));
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<String>) = self.query("SCAN", scan).await?;
            if !keys.is_empty() {
                let n: u64 = self
                    .query("UNLINK", redis::cmd("UNLINK").arg(&keys).clone())
                    .await?;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl RateLimiter for RedisCache {
    /// One `EVALSHA` round trip per decision. When Redis can't be reached, the configured
    /// [`FailurePolicy`] decides and the decision says `fallback: true`.
    async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<RateLimitDecision> {
        match self.rate_limit(key, limit, window).await {
            Err(err) if matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout) => {
                tracing::warn!(error = %err, policy = ?self.config.failure_policy, "rate limiter falling back");
                let allowed = self.config.failure_policy == FailurePolicy::Open;
                Ok(RateLimitDecision {
                    allowed,
                    limit,
                    remaining: if allowed { limit } else { 0 },
                    reset_after: window,
                    fallback: true,
                })
            }
            other => other,
        }
    }
}

#[async_trait]
impl HealthCheck for RedisCache {
    fn service(&self) -> &str {
        "cache"
    }

    fn backend(&self) -> &str {
        "redis"
    }

    async fn probe(&self) -> Result<Probe> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING")
            .ignore()
            .cmd("INFO")
            .arg("server")
            .cmd("INFO")
            .arg("memory")
            .cmd("DBSIZE");
        let (server, memory, keys): (String, String, u64) = self
            .with_conn("PING", |mut conn| async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        let field = |info: &str, name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| "?".into())
        };
        let status = self.pool.status();
        Ok(Probe::healthy(format!(
            "redis {} at {}; used_memory {} (max {}); {keys} keys; pool {}/{} in use",
            field(&server, "redis_version"),
            redact_url(self.config.url.expose()),
            field(&memory, "used_memory_human"),
            field(&memory, "maxmemory_human"),
            status.size - status.available,
            status.max_size,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_match_literally() {
        assert_eq!(glob_escape("user:[1]*?\\"), "user:\\[1\\]\\*\\?\\\\");
        assert_eq!(glob_escape("plain:"), "plain:");
    }
}
