//! `RedisCache`: deadpool-redis, a namespace prefix, and a deadline on every command.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{Connection, Manager, Pool, Runtime};
use infra_core::{
    Cache, CacheLimits, Error, HealthCheck, Probe, RateLimitDecision, RateLimiter, Result,
    check_rate_limit_args, redact_url,
};
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Script};

use crate::cache_metrics::CacheMetrics;
use crate::config::{RateLimitAlgorithm, RedisConfig};
use crate::key_space::{SCAN_COUNT, glob_escape};
use crate::redis_error::{connection_failed, map_pool_error, map_redis_error};
use crate::redis_key::{NamespacedKey, RateLimitKey};
use crate::redis_pool::{Lease, Leases};
use crate::redis_scripts;
use crate::tags::{TaggedCache, check_tag, tag_key};

/// A cache and rate limiter on Redis.
///
/// Every call — waiting for a pooled connection included — is bounded by
/// `command_timeout`: a stalled Redis yields [`Timeout`](infra_core::ErrorKind::Timeout), never a hang. Commands
/// share a few multiplexed connections (one per CPU) leased from the pool (one round trip each, no per-call
/// `PING`, concurrent commands batched into one write); a failed connection goes back to the
/// pool, whose check replaces it, so the same `RedisCache` recovers when Redis comes back.
pub struct RedisCache {
    leases: Leases<Manager, Connection>,
    config: RedisConfig,
    limits: CacheLimits,
    algorithm: RateLimitAlgorithm,
    script: Script,
    set_tagged: Script,
    take_tag: Script,
    metrics: CacheMetrics,
}

impl RedisCache {
    /// Builds the pool (no connection is opened until the first call).
    pub fn new(config: RedisConfig, algorithm: RateLimitAlgorithm) -> Result<Self> {
        let manager = Manager::new(config.url.expose().as_str()).map_err(|_| {
            Error::config(config.url_variable, "is not a valid Redis connection URL")
        })?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.command_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.command_timeout))
            .build()
            .map_err(|e| Error::backend(format!("cannot build the Redis pool: {e}")))?;
        let script = Script::new(&redis_scripts::rate_limit(algorithm));
        Ok(RedisCache {
            leases: Leases::new(pool),
            config,
            limits: CacheLimits::default(),
            algorithm,
            script,
            set_tagged: Script::new(&redis_scripts::set_tagged()),
            take_tag: Script::new(redis_scripts::TAKE_TAG),
            metrics: CacheMetrics::new("redis"),
        })
    }

    /// Replaces the input limits.
    pub fn with_limits(mut self, limits: CacheLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The underlying pool, for commands this API does not cover. The connections this cache
    /// keeps leased count against its size: hold what you take from it only briefly.
    pub fn pool(&self) -> &Pool {
        self.leases.pool()
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
        let prefix = &self.config.key_prefix;
        let mut full = String::with_capacity(prefix.len() + key.len());
        full.push_str(prefix);
        full.push_str(key);
        full
    }

    /// Checks a key, counting the namespace prefix against the limit.
    fn checked_key(&self, key: &str) -> Result<String> {
        self.limits.check_key(key)?;
        let full = self.key(key);
        self.limits.check_key(&full)?;
        Ok(full)
    }

    /// [`checked_key`](Self::checked_key) for one command's argument, without building the
    /// full key.
    fn namespaced<'a>(&'a self, key: &'a str) -> Result<NamespacedKey<'a>> {
        self.limits.check_key(key)?;
        let namespaced = NamespacedKey {
            prefix: &self.config.key_prefix,
            key,
        };
        if namespaced.len() > self.limits.max_key_bytes {
            // Rare: the same error `checked_key` gives, naming the full length.
            self.limits.check_key(&self.key(key))?;
        }
        Ok(namespaced)
    }

    /// A command naming one key, with its buffers sized for it and `extra` more bytes.
    fn keyed(&self, name: &str, key: NamespacedKey<'_>, args: usize, extra: usize) -> redis::Cmd {
        // Sized up front: growing the buffers argument by argument reallocated them.
        let mut cmd = redis::Cmd::with_capacity(2 + args, name.len() + key.len() + extra);
        cmd.arg(name).arg(key);
        cmd
    }

    /// One command on a shared connection, within the command timeout, pool wait included:
    /// what [`with_conn`](Self::with_conn) does, written out for the single command of
    /// `get`/`set`/`delete`/…, whose futures stay small and unboxed inside the call's one
    /// boxed future.
    async fn command<T: FromRedisValue>(&self, op: &str, cmd: &redis::Cmd) -> Result<T> {
        let (mut conn, slot) = match self.leases.ready() {
            // No wait: the whole timeout remains, so no clock is read.
            Ok(Lease { mut conn, slot }) => {
                conn.set_response_timeout(self.config.command_timeout);
                (conn, slot)
            }
            Err(empty) => {
                let deadline = tokio::time::Instant::now() + self.config.command_timeout;
                let Lease { mut conn, slot } = self.fill(op, empty, deadline).await?;
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                if remaining.is_zero() {
                    return Err(self.timed_out(op));
                }
                conn.set_response_timeout(remaining);
                (conn, slot)
            }
        };
        // `send_packed_command` rather than `query_async`: the latter boxes one more future.
        let reply = conn
            .send_packed_command(cmd)
            .await
            .and_then(redis::Value::extract_error);
        match reply {
            Ok(value) => redis::from_redis_value(value).map_err(|e| {
                map_redis_error(op, self.config.url_variable, redis::RedisError::from(e))
            }),
            Err(err) => Err(self.failed(op, slot, err)),
        }
    }

    fn timed_out(&self, op: &str) -> Error {
        Error::timeout(&format!("redis {op}"), self.config.command_timeout)
    }

    /// Fills an empty slot within the deadline.
    async fn fill(
        &self,
        op: &str,
        slot: usize,
        deadline: tokio::time::Instant,
    ) -> Result<Lease<MultiplexedConnection>> {
        match tokio::time::timeout_at(deadline, self.leases.fill(slot)).await {
            Ok(lease) => lease.map_err(|e| map_pool_error(op, self.config.url_variable, e)),
            Err(_) => Err(self.timed_out(op)),
        }
    }

    /// Maps a failed request, giving up the slot's connection when the connection itself
    /// failed or stalled (the pool's check decides whether it lives on).
    fn failed(&self, op: &str, slot: usize, err: redis::RedisError) -> Error {
        if err.is_timeout() {
            self.leases.discard(slot);
            return self.timed_out(op);
        }
        if connection_failed(&err) {
            self.leases.discard(slot);
        }
        map_redis_error(op, self.config.url_variable, err)
    }

    /// Runs `f` on a pooled connection within the command timeout, pool wait included.
    ///
    /// The deadline of the reply is the connection's own response timeout, set on this call's
    /// clone of it to what remains of the deadline: redis-rs already runs a timer per request
    /// (500 ms by default), so a second timer of ours around it would double that cost on
    /// every command. `f` gets the deadline too: a call needing more than one round trip sets
    /// the timeout again before each (see [`RedisCache::eval`]).
    async fn with_conn<T, F, Fut>(&self, op: &str, f: F) -> Result<T>
    where
        F: FnOnce(MultiplexedConnection, tokio::time::Instant) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.command_timeout;
        let Lease { mut conn, slot } = match self.leases.ready() {
            Ok(lease) => lease,
            Err(empty) => self.fill(op, empty, deadline).await?,
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err(self.timed_out(op));
        }
        conn.set_response_timeout(remaining);
        f(conn, deadline)
            .await
            .map_err(|err| self.failed(op, slot, err))
    }

    async fn query<T: FromRedisValue + Send>(&self, op: &str, cmd: redis::Cmd) -> Result<T> {
        self.with_conn(
            op,
            |mut conn, _| async move { cmd.query_async(&mut conn).await },
        )
        .await
    }

    /// An `EVALSHA` of `script` with `keys` keys, its buffers sized for `bytes` of keys and
    /// arguments; the caller appends the keys, then the arguments.
    fn evalsha(script: &Script, keys: usize, args: usize, bytes: usize) -> redis::Cmd {
        // Sized up front: growing the command's buffers argument by argument reallocated them
        // several times per call.
        let mut cmd = redis::Cmd::with_capacity(
            3 + keys + args,
            "EVALSHA".len() + script.get_hash().len() + 4 + bytes,
        );
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
        cmd
    }

    /// Runs a Lua script's `EVALSHA` (built by [`evalsha`](Self::evalsha)) on the same path as
    /// every single command, and when Redis lost the script (`NOSCRIPT`: a restart, a failover,
    /// `SCRIPT FLUSH`) `SCRIPT LOAD` and `EVALSHA` again — each request bounded by what remains
    /// of the call's deadline, so the whole call still ends by it.
    async fn eval<T: FromRedisValue + Send>(
        &self,
        op: &str,
        script: &Script,
        evalsha: redis::Cmd,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + self.config.command_timeout;
        match self.command(op, &evalsha).await {
            Err(err) if err.context("redis_code") == Some("NOSCRIPT") => {
                // Rare: boxed, so the reload's futures stay out of every call's state.
                Box::pin(self.reload_and_eval(op, script, evalsha, deadline)).await
            }
            other => other,
        }
    }

    async fn reload_and_eval<T: FromRedisValue + Send>(
        &self,
        op: &str,
        script: &Script,
        evalsha: redis::Cmd,
        deadline: tokio::time::Instant,
    ) -> Result<T> {
        if deadline <= tokio::time::Instant::now() {
            return Err(self.timed_out(op));
        }
        self.with_conn(op, |mut conn, deadline| async move {
            let remaining = || deadline.saturating_duration_since(tokio::time::Instant::now());
            conn.set_response_timeout(remaining());
            script.load_async(&mut conn).await?;
            conn.set_response_timeout(remaining());
            evalsha.query_async(&mut conn).await
        })
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
        let base = RateLimitKey {
            prefix: &self.config.key_prefix,
            algorithm: self.algorithm.as_str(),
            limit,
            window_ms,
            key,
        };
        let mut evalsha = Self::evalsha(&self.script, 1, 2, base.max_len() + 40);
        evalsha.arg(base).arg(limit).arg(window_ms);
        let (allowed, remaining, reset_ms): (i64, i64, i64) =
            self.eval("EVALSHA", &self.script, evalsha).await?;
        Ok(RateLimitDecision {
            allowed: allowed == 1,
            limit,
            remaining: remaining.max(0) as u64,
            reset_after: Duration::from_millis(reset_ms.max(0) as u64),
            fallback: false,
        })
    }
}

/// A command with one argument.
fn one<A: redis::ToRedisArgs>(name: &str, arg: A) -> redis::Cmd {
    let mut cmd = redis::cmd(name);
    cmd.arg(arg);
    cmd
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let result = self
            .metrics
            .get
            .timed(async {
                let key = self.namespaced(key)?;
                self.command("GET", &self.keyed("GET", key, 0, 0)).await
            })
            .await;
        self.metrics.read(&result);
        result
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.metrics
            .set
            .timed(async {
                let key = self.namespaced(key)?;
                self.limits.check_value(key.key, value)?;
                self.limits.check_ttl(ttl)?;
                // "PX" and up to 20 digits of milliseconds.
                let mut cmd = self.keyed("SET", key, 3, value.len() + 22);
                cmd.arg(value).arg("PX").arg(ttl.as_millis() as u64);
                self.command("SET", &cmd).await
            })
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.metrics
            .delete
            .timed(async {
                let key = self.namespaced(key)?;
                let removed: u64 = self.command("DEL", &self.keyed("DEL", key, 0, 0)).await?;
                Ok(removed > 0)
            })
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.metrics
            .exists
            .timed(async {
                let key = self.namespaced(key)?;
                let n: u64 = self
                    .command("EXISTS", &self.keyed("EXISTS", key, 0, 0))
                    .await?;
                Ok(n > 0)
            })
            .await
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        self.metrics
            .ttl
            .timed(async {
                let key = self.namespaced(key)?;
                let ms: i64 = self.command("PTTL", &self.keyed("PTTL", key, 0, 0)).await?;
                // -2: no such key; -1: a key without expiry (written by something else).
                Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
            })
            .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let result = self
            .metrics
            .get_many
            .timed(async {
                let full: Vec<String> = keys
                    .iter()
                    .map(|k| self.checked_key(k))
                    .collect::<Result<_>>()?;
                if full.is_empty() {
                    return Ok(Vec::new());
                }
                let mut cmd = redis::cmd("MGET");
                cmd.arg(&full);
                let values: Vec<Option<Vec<u8>>> = self.query("MGET", cmd).await?;
                Ok(values)
            })
            .await;
        self.metrics.read_many(&result);
        result
    }

    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration) -> Result<()> {
        self.metrics
            .set_many
            .timed(async {
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
                self.with_conn("MULTI SET", |mut conn, _| async move {
                    pipe.query_async::<()>(&mut conn).await
                })
                .await
            })
            .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.metrics
            .delete_prefix
            .timed(async {
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
                        let n: u64 = self.query("UNLINK", one("UNLINK", &keys)).await?;
                        removed += n;
                    }
                    if next == 0 {
                        return Ok(removed);
                    }
                    cursor = next;
                }
            })
            .await
    }
}

#[async_trait]
impl TaggedCache for RedisCache {
    async fn set_tagged(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tags: &[&str],
    ) -> Result<()> {
        self.metrics
            .tags
            .timed(async {
                let full = self.checked_key(key)?;
                self.limits.check_value(key, value)?;
                self.limits.check_ttl(ttl)?;
                let mut keys = vec![full];
                for tag in tags {
                    check_tag(tag)?;
                    keys.push(self.key(&tag_key(tag)));
                }
                let bytes = keys.iter().map(String::len).sum::<usize>() + value.len() + 20;
                let mut evalsha = Self::evalsha(&self.set_tagged, keys.len(), 2, bytes);
                for key in &keys {
                    evalsha.arg(key);
                }
                evalsha.arg(value).arg(ttl.as_millis() as u64);
                self.eval::<i64>("EVALSHA set_tagged", &self.set_tagged, evalsha)
                    .await
                    .map(drop)
            })
            .await
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        self.metrics
            .tags
            .timed(async {
                check_tag(tag)?;
                let set = self.key(&tag_key(tag));
                let taken = format!("{set}:invalidating:{:016x}", rand::random::<u64>());
                let mut evalsha = Self::evalsha(&self.take_tag, 2, 0, set.len() + taken.len());
                evalsha.arg(&set).arg(&taken);
                let existed: i64 = self
                    .eval("EVALSHA take_tag", &self.take_tag, evalsha)
                    .await?;
                if existed == 0 {
                    return Ok(0);
                }
                // SSCAN pages through the set, so a tag on a million keys never blocks Redis.
                let mut cursor: u64 = 0;
                let mut removed = 0;
                loop {
                    let mut scan = redis::cmd("SSCAN");
                    scan.arg(&taken).arg(cursor).arg("COUNT").arg(SCAN_COUNT);
                    let (next, keys): (u64, Vec<Vec<u8>>) = self.query("SSCAN", scan).await?;
                    if !keys.is_empty() {
                        let n: u64 = self.query("UNLINK", one("UNLINK", &keys)).await?;
                        removed += n;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                self.query::<u64>("UNLINK", one("UNLINK", &taken)).await?;
                Ok(removed)
            })
            .await
    }
}

#[async_trait]
impl RateLimiter for RedisCache {
    /// One `EVALSHA` round trip per decision. When Redis can't be reached, the configured
    /// [`FailurePolicy`](crate::FailurePolicy) decides and the decision says `fallback: true`.
    async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<RateLimitDecision> {
        let result = self
            .metrics
            .rate_limit
            .timed(async {
                let outcome = self.rate_limit(key, limit, window).await;
                self.config.failure_policy.or_decide(outcome, limit, window)
            })
            .await;
        self.metrics.decided(&result);
        result
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
        crate::probe::write_read_delete(self).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("PING")
            .ignore()
            .cmd("INFO")
            .arg("server")
            .cmd("INFO")
            .arg("memory")
            .cmd("DBSIZE");
        let (server, memory, keys): (String, String, u64) = self
            .with_conn("PING", |mut conn, _| async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        let field = |info: &str, name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| "?".into())
        };
        let status = self.leases.pool().status();
        Ok(Probe::healthy(format!(
            "redis {} at {}; used_memory {} (max {}); {keys} keys; {}/{} pooled connections open",
            field(&server, "redis_version"),
            redact_url(self.config.url.expose()),
            field(&memory, "used_memory_human"),
            field(&memory, "maxmemory_human"),
            self.leases.leased(),
            status.max_size,
        )))
    }

    /// One `PING`: Redis answers on a pooled connection.
    async fn ping(&self) -> Result<Probe> {
        let pong: String = self
            .with_conn("PING", |mut conn, _| async move {
                redis::cmd("PING").query_async(&mut conn).await
            })
            .await?;
        Ok(Probe::healthy(format!(
            "redis at {} answered {pong}",
            redact_url(self.config.url.expose())
        )))
    }
}
