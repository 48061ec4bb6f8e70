//! `UpstashRestCache`: the same keys, scripts and limits as `RedisCache`, over Upstash's REST
//! API instead of the Redis protocol.

use std::time::Duration;

use async_trait::async_trait;
use infra_core::{
    Cache, CacheLimits, Error, HealthCheck, Probe, RateLimitDecision, RateLimiter, Result,
    check_rate_limit_args, redact_url,
};
use serde_json::Value;

use crate::cache_metrics::CacheMetrics;
use crate::config::{RateLimitAlgorithm, UpstashConfig};
use crate::key_space::{SCAN_COUNT, glob_escape, rate_limit_key};
use crate::redis_scripts;
use crate::tags::{TaggedCache, check_tag, tag_key};
use crate::upstash_protocol::{Command, Reply, RestClient, arg, num};

/// A Lua script and its SHA1, for `EVALSHA`.
struct LuaScript {
    source: String,
    sha1: String,
}

impl LuaScript {
    fn new(source: String) -> Self {
        let sha1 = sha1_smol::Sha1::from(source.as_bytes())
            .digest()
            .to_string();
        LuaScript { source, sha1 }
    }
}

/// A cache and rate limiter on Upstash's REST API (`UPSTASH_REDIS_REST_URL` +
/// `UPSTASH_REDIS_REST_TOKEN`), for where the Redis protocol is not an option.
///
/// Same behaviour as [`RedisCache`](crate::RedisCache), one HTTPS request per call: the same
/// key layout (prefix, tag sets, rate-limit keys), so both backends can share one database;
/// the same Lua scripts, run with `EVALSHA` and, when Redis answers `NOSCRIPT`, once with
/// `EVAL` (which caches the script again), so a rate-limit decision is one request in the
/// common case; `set_many` as one `/multi-exec` transaction and prefix deletion as `SCAN` +
/// `UNLINK`. Every request is bounded by `command_timeout`. Values travel as JSON strings;
/// values that are not UTF-8 are sent in hex and decoded by a script inside Redis, and
/// replies are asked for in base64, so any bytes round-trip.
///
/// A refused token is a [`Config`](infra_core::ErrorKind::Config) error naming `UPSTASH_REDIS_REST_TOKEN`; the
/// token is never printed.
pub struct UpstashRestCache {
    client: RestClient,
    config: UpstashConfig,
    limits: CacheLimits,
    algorithm: RateLimitAlgorithm,
    rate_limit: LuaScript,
    set_tagged: LuaScript,
    set_tagged_hex: LuaScript,
    set_many_hex: LuaScript,
    take_tag: LuaScript,
    metrics: CacheMetrics,
}

impl UpstashRestCache {
    /// Builds the HTTP client (no request is made until the first call).
    pub fn new(config: UpstashConfig, algorithm: RateLimitAlgorithm) -> Result<Self> {
        Ok(UpstashRestCache {
            client: RestClient::new(&config)?,
            config,
            limits: CacheLimits::default(),
            algorithm,
            rate_limit: LuaScript::new(redis_scripts::rate_limit(algorithm)),
            set_tagged: LuaScript::new(redis_scripts::set_tagged()),
            set_tagged_hex: LuaScript::new(redis_scripts::set_tagged_hex()),
            set_many_hex: LuaScript::new(redis_scripts::set_many_hex()),
            take_tag: LuaScript::new(redis_scripts::TAKE_TAG.to_owned()),
            metrics: CacheMetrics::new("upstash"),
        })
    }

    /// Replaces the input limits.
    pub fn with_limits(mut self, limits: CacheLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &UpstashConfig {
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

    async fn run(&self, op: &str, command: Command) -> Result<Reply> {
        self.client.command(op, command).await
    }

    /// `EVALSHA`, and on `NOSCRIPT` (a fresh or flushed script cache) `EVAL`, which also
    /// caches the script for the next `EVALSHA`.
    async fn eval(&self, script: &LuaScript, keys: Vec<String>, args: Vec<Value>) -> Result<Reply> {
        let command = |name: &str, script: &str| -> Command {
            let mut command = vec![arg(name), arg(script), num(keys.len() as u64)];
            command.extend(keys.iter().map(|k| arg(k.as_str())));
            command.extend(args.iter().cloned());
            command
        };
        match self.run("EVALSHA", command("EVALSHA", &script.sha1)).await {
            Err(err) if err.context("redis_code") == Some("NOSCRIPT") => {
                self.run("EVAL", command("EVAL", &script.source)).await
            }
            other => other,
        }
    }

    /// A value as a JSON string argument, or `None` when it is not UTF-8 (and must go in hex).
    fn text(value: &[u8]) -> Option<Value> {
        std::str::from_utf8(value).ok().map(arg)
    }

    async fn rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
    ) -> Result<RateLimitDecision> {
        check_rate_limit_args(key, limit, window)?;
        let window_ms = (window.as_millis() as u64).max(1);
        let base = self.key(&rate_limit_key(
            self.algorithm.as_str(),
            limit,
            window_ms,
            key,
        ));
        let reply = self
            .eval(
                &self.rate_limit,
                vec![base],
                vec![num(limit), num(window_ms)],
            )
            .await?;
        let numbers = reply
            .array("EVALSHA")?
            .into_iter()
            .map(|r| r.int("EVALSHA"))
            .collect::<Result<Vec<i64>>>()?;
        let [allowed, remaining, reset_ms] = numbers[..] else {
            return Err(Error::backend(format!(
                "upstash EVALSHA: the rate-limit script answered {} numbers, not 3",
                numbers.len()
            )));
        };
        Ok(RateLimitDecision {
            allowed: allowed == 1,
            limit,
            remaining: remaining.max(0) as u64,
            reset_after: Duration::from_millis(reset_ms.max(0) as u64),
            fallback: false,
        })
    }

    /// `SCAN`s (or `SSCAN`s) a cursor to the end, `UNLINK`ing each page; returns how many
    /// keys were removed.
    async fn unlink_pages(&self, op: &str, scan: impl Fn(u64) -> Command) -> Result<u64> {
        let mut cursor = 0;
        let mut removed = 0;
        loop {
            let page = self.run(op, scan(cursor)).await?.array(op)?;
            let [next, keys]: [Reply; 2] = page.try_into().map_err(|_| {
                Error::backend(format!("upstash {op}: a page that is not [cursor, keys]"))
            })?;
            cursor = next.number_string(op)?;
            let keys = keys
                .array(op)?
                .into_iter()
                .map(|k| k.bytes(op).map(Option::unwrap_or_default))
                .collect::<Result<Vec<Vec<u8>>>>()?;
            if !keys.is_empty() {
                removed += self.unlink(keys).await?;
            }
            if cursor == 0 {
                return Ok(removed);
            }
        }
    }

    /// `UNLINK`s keys read from a reply. Key names are UTF-8 here (every key this cache
    /// writes is a `&str`); a foreign key that is not is skipped rather than mangled.
    async fn unlink(&self, keys: Vec<Vec<u8>>) -> Result<u64> {
        let mut command = vec![arg("UNLINK")];
        command.extend(
            keys.into_iter()
                .filter_map(|k| String::from_utf8(k).ok().map(arg)),
        );
        if command.len() == 1 {
            return Ok(0);
        }
        Ok(self.run("UNLINK", command).await?.int("UNLINK")?.max(0) as u64)
    }
}

#[async_trait]
impl Cache for UpstashRestCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let result = self
            .metrics
            .get
            .timed(async {
                let key = self.checked_key(key)?;
                self.run("GET", vec![arg("GET"), arg(key)])
                    .await?
                    .bytes("GET")
            })
            .await;
        self.metrics.read(&result);
        result
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.metrics
            .set
            .timed(async {
                self.set_many(vec![(key.to_owned(), value.to_vec())], ttl)
                    .await
            })
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.metrics
            .delete
            .timed(async {
                let key = self.checked_key(key)?;
                Ok(self
                    .run("DEL", vec![arg("DEL"), arg(key)])
                    .await?
                    .int("DEL")?
                    > 0)
            })
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.metrics
            .exists
            .timed(async {
                let key = self.checked_key(key)?;
                Ok(self
                    .run("EXISTS", vec![arg("EXISTS"), arg(key)])
                    .await?
                    .int("EXISTS")?
                    > 0)
            })
            .await
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        self.metrics
            .ttl
            .timed(async {
                let key = self.checked_key(key)?;
                let ms = self
                    .run("PTTL", vec![arg("PTTL"), arg(key)])
                    .await?
                    .int("PTTL")?;
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
                let mut command = vec![arg("MGET")];
                command.extend(full.into_iter().map(arg));
                let values = self
                    .run("MGET", command)
                    .await?
                    .array("MGET")?
                    .into_iter()
                    .map(|v| v.bytes("MGET"))
                    .collect::<Result<Vec<_>>>()?;
                if values.len() != keys.len() {
                    return Err(Error::backend(format!(
                        "upstash MGET: {} values for {} keys",
                        values.len(),
                        keys.len()
                    )));
                }
                Ok(values)
            })
            .await;
        self.metrics.read_many(&result);
        result
    }

    /// One request: a `/multi-exec` transaction of `SET … PX`, or, when a value is not UTF-8,
    /// one script writing every entry from hex (also atomic).
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration) -> Result<()> {
        self.metrics
            .set_many
            .timed(async {
                self.limits.check_ttl(ttl)?;
                let mut full = Vec::with_capacity(entries.len());
                for (key, value) in &entries {
                    full.push(self.checked_key(key)?);
                    self.limits.check_value(key, value)?;
                }
                if entries.is_empty() {
                    return Ok(());
                }
                let ttl_ms = ttl.as_millis() as u64;
                let texts: Option<Vec<Value>> =
                    entries.iter().map(|(_, v)| Self::text(v)).collect();
                let Some(texts) = texts else {
                    let mut args = vec![num(ttl_ms)];
                    args.extend(entries.iter().map(|(_, v)| arg(hex::encode(v))));
                    self.eval(&self.set_many_hex, full, args).await?;
                    return Ok(());
                };
                let commands: Vec<Command> = full
                    .into_iter()
                    .zip(texts)
                    .map(|(key, value)| vec![arg("SET"), arg(key), value, arg("PX"), num(ttl_ms)])
                    .collect();
                if commands.len() == 1 {
                    let command = commands.into_iter().next().unwrap_or_default();
                    return self.run("SET", command).await.map(drop);
                }
                for outcome in self.client.transaction("MULTI SET", commands).await? {
                    outcome?;
                }
                Ok(())
            })
            .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.metrics
            .delete_prefix
            .timed(async {
                self.limits.check_prefix(prefix)?;
                let pattern = format!("{}*", glob_escape(&self.key(prefix)));
                self.unlink_pages("SCAN", |cursor| {
                    vec![
                        arg("SCAN"),
                        arg(cursor.to_string()),
                        arg("MATCH"),
                        arg(pattern.as_str()),
                        arg("COUNT"),
                        num(SCAN_COUNT as u64),
                    ]
                })
                .await
            })
            .await
    }
}

#[async_trait]
impl TaggedCache for UpstashRestCache {
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
                let ttl_ms = num(ttl.as_millis() as u64);
                match Self::text(value) {
                    Some(text) => self.eval(&self.set_tagged, keys, vec![text, ttl_ms]).await,
                    None => {
                        let hex = arg(hex::encode(value));
                        self.eval(&self.set_tagged_hex, keys, vec![hex, ttl_ms])
                            .await
                    }
                }
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
                let existed = self
                    .eval(&self.take_tag, vec![set, taken.clone()], Vec::new())
                    .await?
                    .int("EVALSHA")?;
                if existed == 0 {
                    return Ok(0);
                }
                let removed = self
                    .unlink_pages("SSCAN", |cursor| {
                        vec![
                            arg("SSCAN"),
                            arg(taken.as_str()),
                            arg(cursor.to_string()),
                            arg("COUNT"),
                            num(SCAN_COUNT as u64),
                        ]
                    })
                    .await?;
                self.unlink(vec![taken.into_bytes()]).await?;
                Ok(removed)
            })
            .await
    }
}

#[async_trait]
impl RateLimiter for UpstashRestCache {
    /// One `EVALSHA` request per decision (two after a `NOSCRIPT`). When Upstash can't be
    /// reached, the configured [`FailurePolicy`](crate::FailurePolicy) decides and the
    /// decision says `fallback: true`.
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
impl HealthCheck for UpstashRestCache {
    fn service(&self) -> &str {
        "cache"
    }

    fn backend(&self) -> &str {
        "upstash"
    }

    async fn probe(&self) -> Result<Probe> {
        crate::probe::write_read_delete(self).await?;
        let keys = self
            .run("DBSIZE", vec![arg("DBSIZE")])
            .await?
            .int("DBSIZE")?;
        Ok(Probe::healthy(format!(
            "upstash REST at {}; {keys} keys",
            redact_url(self.client.url().as_str())
        )))
    }

    /// One `PING` request: the REST endpoint answers and accepts the token.
    async fn ping(&self) -> Result<Probe> {
        self.run("PING", vec![arg("PING")]).await?;
        Ok(Probe::healthy(format!(
            "upstash REST at {} answered",
            redact_url(self.client.url().as_str())
        )))
    }
}
