//! `RedisClusterCache`: redis-rs's async cluster client, pooled by deadpool-redis, with the
//! key layout and Lua scripts of `RedisCache`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::cluster::{Connection, Manager, Pool};
use deadpool_redis::{PoolError, Runtime};
use infra_core::{
    Cache, CacheLimits, Error, ErrorKind, RateLimitDecision, RateLimiter, Result,
    check_rate_limit_args,
};
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, RedisError, Script};
use tokio::time::Instant;

use super::key_slot::{TaggedRateLimitKey, key_slot};
use crate::cache_metrics::CacheMetrics;
use crate::config::{RateLimitAlgorithm, RedisClusterConfig};
use crate::key_space::{SCAN_COUNT, glob_escape};
use crate::redis_error::{connection_failed, map_pool_error, map_redis_error};
use crate::redis_key::NamespacedKey;
use crate::redis_pool::{Lease, Leases};
use crate::redis_scripts;

/// Cluster connections every command is spread over. One, unlike `RedisCache`'s one per CPU:
/// a cluster connection already holds a multiplexed connection per node, each read and
/// written on its own, and one routing task batches more commands per node write. In one
/// benchmark run on the 2-core development VM (load 7–10), ours on one leased cluster
/// connection measured 0.958 (get/set) and 1.024 (rate limit) of the best raw redis-rs use,
/// against 0.848 and 0.956 on one per CPU.
const SHARED_CLUSTER_CONNECTIONS: usize = 1;

/// A cache and rate limiter on Redis Cluster.
///
/// Every call is one command routed to the master serving its key's slot (or, for reads
/// with [`read_from_replicas`](RedisClusterConfig::read_from_replicas), to one of its
/// replicas), bounded by `command_timeout` — redirections, reconnections and the pool wait
/// included. redis-rs's cluster client follows `MOVED`/`ASK`, refreshes its slot map when the
/// topology changes and reconnects to nodes by itself; like `RedisCache`, the cache leases a
/// cluster connection from the pool and shares it between tasks.
///
/// What differs from one Redis, because a command may only touch one slot:
///
/// - a rate limiter's keys carry a hash tag (`…:{user:1}`) so its scripts stay atomic and
///   exact; the layout is otherwise `RedisCache`'s (see `docs/cache.md` on moving over);
/// - `get_many` is split by slot by the client, `set_many` is one script per slot (atomic per
///   slot, not across slots), `delete_prefix` walks every master;
/// - a tagged write adds the key to each tag set, writes it, and adds it again (each tag set is
///   in a slot of its own), which keeps `invalidate_tag` from missing a key written
///   concurrently.
pub struct RedisClusterCache {
    leases: Leases<Manager, Connection>,
    pub(super) config: RedisClusterConfig,
    pub(super) limits: CacheLimits,
    algorithm: RateLimitAlgorithm,
    rate_limit: ClusterScript,
    set_many: ClusterScript,
    pub(super) tag_member: ClusterScript,
    pub(super) take_tag: ClusterScript,
    metrics: CacheMetrics,
}

/// A Lua script sent by its SHA1 (`EVALSHA`) and, when a node answers `NOSCRIPT` (a fresh node,
/// a failover, `SCRIPT FLUSH`), once by its source (`EVAL`, which also caches it there).
pub(super) struct ClusterScript {
    hash: String,
    code: String,
}

impl ClusterScript {
    fn new(code: String) -> Self {
        ClusterScript {
            hash: Script::new(&code).get_hash().to_owned(),
            code,
        }
    }
}

impl RedisClusterCache {
    /// Builds the pool (no connection is opened until the first call). Refuses a key prefix
    /// holding `{` or `}`, naming `REDIS_KEY_PREFIX`.
    pub fn new(config: RedisClusterConfig, algorithm: RateLimitAlgorithm) -> Result<Self> {
        config.check_prefix()?;
        let nodes: Vec<String> = config.nodes.iter().map(|n| n.expose().clone()).collect();
        let manager = Manager::new(nodes, config.read_from_replicas).map_err(|_| {
            Error::config(
                config.nodes_variable,
                "is not a valid list of Redis Cluster node URLs",
            )
        })?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.command_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.command_timeout))
            .build()
            .map_err(|e| Error::backend(format!("cannot build the Redis Cluster pool: {e}")))?;
        Ok(RedisClusterCache {
            leases: Leases::with_slots(pool, SHARED_CLUSTER_CONNECTIONS),
            limits: CacheLimits::default(),
            algorithm,
            rate_limit: ClusterScript::new(redis_scripts::rate_limit(algorithm)),
            set_many: ClusterScript::new(redis_scripts::set_many()),
            tag_member: ClusterScript::new(redis_scripts::TAG_MEMBER.to_owned()),
            take_tag: ClusterScript::new(redis_scripts::TAKE_TAG.to_owned()),
            config,
            metrics: CacheMetrics::new("redis-cluster"),
        })
    }

    /// Replaces the input limits.
    pub fn with_limits(mut self, limits: CacheLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The underlying pool of cluster connections, for commands this API does not cover. The
    /// connections this cache keeps leased count against its size.
    pub fn pool(&self) -> &Pool {
        self.leases.pool()
    }

    /// The configuration.
    pub fn config(&self) -> &RedisClusterConfig {
        &self.config
    }

    /// The rate limiter's algorithm.
    pub fn algorithm(&self) -> RateLimitAlgorithm {
        self.algorithm
    }

    /// Cluster connections currently leased by the cache.
    pub(super) fn leased(&self) -> usize {
        self.leases.leased()
    }

    pub(super) fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.config.key_prefix.len() + key.len());
        full.push_str(&self.config.key_prefix);
        full.push_str(key);
        full
    }

    /// Checks a key, counting the namespace prefix against the limit.
    pub(super) fn checked_key(&self, key: &str) -> Result<String> {
        self.limits.check_key(key)?;
        let full = self.key(key);
        self.limits.check_key(&full)?;
        Ok(full)
    }

    /// [`checked_key`](Self::checked_key) for one command's argument, and the key's slot.
    fn namespaced<'a>(&'a self, key: &'a str) -> Result<(NamespacedKey<'a>, u16)> {
        self.limits.check_key(key)?;
        let namespaced = NamespacedKey {
            prefix: &self.config.key_prefix,
            key,
        };
        if namespaced.len() > self.limits.max_key_bytes {
            self.limits.check_key(&self.key(key))?;
        }
        Ok((namespaced, key_slot(&self.config.key_prefix, key)))
    }

    /// Where reads of a slot go: its master, or any of its nodes with replica reads on.
    fn read_from(&self, slot: u16) -> Route {
        let addr = if self.config.read_from_replicas {
            SlotAddr::ReplicaOptional
        } else {
            SlotAddr::Master
        };
        Route::new(slot, addr)
    }

    /// A command naming one key, with its buffers sized for it and `extra` more bytes.
    fn keyed(name: &str, key: NamespacedKey<'_>, args: usize, extra: usize) -> Cmd {
        let mut cmd = Cmd::with_capacity(2 + args, name.len() + key.len() + extra);
        cmd.arg(name).arg(key);
        cmd
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.config.command_timeout
    }

    /// One command, sent to `route`'s node, within the command timeout.
    pub(super) async fn command<T: FromRedisValue>(
        &self,
        op: &str,
        cmd: Cmd,
        route: Route,
    ) -> Result<T> {
        self.command_until(op, cmd, route, self.deadline()).await
    }

    async fn command_until<T: FromRedisValue>(
        &self,
        op: &str,
        cmd: Cmd,
        route: Route,
        deadline: Instant,
    ) -> Result<T> {
        let Lease { mut conn, slot } = self.lease(op, deadline).await?;
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let reply = tokio::time::timeout_at(deadline, conn.route_command(cmd, routing)).await;
        self.reply(op, slot, reply)
    }

    /// One command routed by the client: split by slot (`MGET`, `UNLINK` of many keys) or
    /// sent to every master (`DBSIZE`), within the command timeout.
    pub(super) async fn query<T: FromRedisValue>(&self, op: &str, cmd: &Cmd) -> Result<T> {
        let deadline = self.deadline();
        let Lease { mut conn, slot } = self.lease(op, deadline).await?;
        let reply = tokio::time::timeout_at(deadline, conn.req_packed_command(cmd)).await;
        self.reply(op, slot, reply)
    }

    async fn lease(&self, op: &str, deadline: Instant) -> Result<Lease<ClusterConnection>> {
        match self.leases.ready() {
            Ok(lease) => Ok(lease),
            // Rare (the first calls, after a failure): the fill is boxed by `Leases`.
            Err(empty) => match tokio::time::timeout_at(deadline, self.leases.fill(empty)).await {
                Ok(Ok(lease)) => Ok(lease),
                Ok(Err(PoolError::Backend(err))) => Err(self.map_error(op, err)),
                Ok(Err(other)) => Err(map_pool_error(op, self.config.nodes_variable, other)),
                Err(_) => Err(self.timed_out(op)),
            },
        }
    }

    fn reply<T: FromRedisValue>(
        &self,
        op: &str,
        slot: usize,
        reply: std::result::Result<redis::RedisResult<redis::Value>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        match reply {
            Ok(Ok(value)) => value
                .extract_error()
                .and_then(|v| redis::from_redis_value(v).map_err(RedisError::from))
                .map_err(|err| self.failed(op, slot, err)),
            Ok(Err(err)) => Err(self.failed(op, slot, err)),
            Err(_) => Err(self.timed_out(op)),
        }
    }

    fn timed_out(&self, op: &str) -> Error {
        Error::timeout(&format!("redis cluster {op}"), self.config.command_timeout)
    }

    /// Maps a failed request, giving the lease's connection back to the pool when the
    /// connection itself failed. The cluster's own transient states (`CLUSTERDOWN` while a
    /// master is failed over, `TRYAGAIN` during a resharding, `MASTERDOWN`, `LOADING`) are
    /// `Unavailable`: retryable, and the rate limiter's failure policy decides meanwhile.
    fn failed(&self, op: &str, slot: usize, err: RedisError) -> Error {
        if connection_failed(&err) {
            self.leases.discard(slot);
        }
        self.map_error(op, err)
    }

    fn map_error(&self, op: &str, err: RedisError) -> Error {
        // The cluster client reports a refused password while connecting as an I/O error
        // "Failed to create initial connections" whose detail is the node's error, kind
        // included: its text is all that is left of it.
        if err.kind() == redis::ErrorKind::AuthenticationFailed
            || err
                .detail()
                .is_some_and(|d| d.contains("AuthenticationFailed"))
        {
            return Error::config(
                self.config.nodes_variable,
                "was refused by Redis (authentication failed)",
            )
            .with_source(err);
        }
        let transient = matches!(
            err.code(),
            Some("CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" | "LOADING")
        ) || err.kind() == redis::ErrorKind::ClusterConnectionNotFound;
        let mapped = map_redis_error(op, self.config.nodes_variable, err);
        if transient && mapped.kind() == ErrorKind::Backend {
            let mut unavailable =
                Error::unavailable(mapped.message().replacen("redis ", "redis cluster ", 1));
            for (key, value) in mapped.context_pairs() {
                unavailable = unavailable.with_context(key, value);
            }
            return unavailable.with_source(mapped);
        }
        mapped
    }

    /// `EVALSHA` of `script` to `route`'s node; `args` appends the key count, keys and
    /// arguments (`bytes` of them, for sizing the buffers). On `NOSCRIPT` the same call is sent
    /// as `EVAL`, within the same deadline.
    pub(super) async fn eval<T: FromRedisValue>(
        &self,
        op: &str,
        script: &ClusterScript,
        route: Route,
        (count, bytes): (usize, usize),
        args: impl Fn(&mut Cmd),
    ) -> Result<T> {
        let deadline = self.deadline();
        let mut evalsha = Cmd::with_capacity(2 + count, 7 + script.hash.len() + bytes);
        evalsha.arg("EVALSHA").arg(&script.hash);
        args(&mut evalsha);
        match self.command_until(op, evalsha, route, deadline).await {
            Err(err) if err.context("redis_code") == Some("NOSCRIPT") => {
                // Rare: boxed, so this future stays out of every call's state.
                Box::pin(async {
                    let mut eval = Cmd::with_capacity(2 + count, 4 + script.code.len() + bytes);
                    eval.arg("EVAL").arg(&script.code);
                    args(&mut eval);
                    self.command_until(op, eval, route, deadline).await
                })
                .await
            }
            other => other,
        }
    }

    async fn decide(&self, key: &str, limit: u64, window: Duration) -> Result<RateLimitDecision> {
        check_rate_limit_args(key, limit, window)?;
        let window_ms = (window.as_millis() as u64).max(1);
        let base = TaggedRateLimitKey {
            prefix: &self.config.key_prefix,
            algorithm: self.algorithm.as_str(),
            limit,
            window_ms,
            key,
        };
        let route = Route::new(base.slot(), SlotAddr::Master);
        let sizes = (4, base.max_len() + 44);
        let (allowed, remaining, reset_ms): (i64, i64, i64) = self
            .eval("EVALSHA", &self.rate_limit, route, sizes, |cmd| {
                cmd.arg(1).arg(base).arg(limit).arg(window_ms);
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

    /// `GET`, from the master whatever the read setting (the health probe's read-back).
    pub(super) async fn get_from_master(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let (key, slot) = self.namespaced(key)?;
        let cmd = Self::keyed("GET", key, 0, 0);
        self.command("GET", cmd, Route::new(slot, SlotAddr::Master))
            .await
    }

    /// Deletes `keys` (full keys, any slots): the client sends one `UNLINK` per slot.
    pub(super) async fn unlink<K: redis::ToRedisArgs>(&self, keys: &[K]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(keys);
        self.query("UNLINK", &cmd).await
    }
}

#[async_trait]
impl Cache for RedisClusterCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let result = self
            .metrics
            .get
            .timed(async {
                let (key, slot) = self.namespaced(key)?;
                let cmd = Self::keyed("GET", key, 0, 0);
                self.command("GET", cmd, self.read_from(slot)).await
            })
            .await;
        self.metrics.read(&result);
        result
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.metrics
            .set
            .timed(async {
                let (key, slot) = self.namespaced(key)?;
                self.limits.check_value(key.key, value)?;
                self.limits.check_ttl(ttl)?;
                // "PX" and up to 20 digits of milliseconds.
                let mut cmd = Self::keyed("SET", key, 3, value.len() + 22);
                cmd.arg(value).arg("PX").arg(ttl.as_millis() as u64);
                self.command("SET", cmd, Route::new(slot, SlotAddr::Master))
                    .await
            })
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.metrics
            .delete
            .timed(async {
                let (key, slot) = self.namespaced(key)?;
                let cmd = Self::keyed("DEL", key, 0, 0);
                let removed: u64 = self
                    .command("DEL", cmd, Route::new(slot, SlotAddr::Master))
                    .await?;
                Ok(removed > 0)
            })
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.metrics
            .exists
            .timed(async {
                let (key, slot) = self.namespaced(key)?;
                let cmd = Self::keyed("EXISTS", key, 0, 0);
                let n: u64 = self.command("EXISTS", cmd, self.read_from(slot)).await?;
                Ok(n > 0)
            })
            .await
    }

    async fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        self.metrics
            .ttl
            .timed(async {
                let (key, slot) = self.namespaced(key)?;
                let cmd = Self::keyed("PTTL", key, 0, 0);
                let ms: i64 = self.command("PTTL", cmd, self.read_from(slot)).await?;
                // -2: no such key; -1: a key without expiry (written by something else).
                Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
            })
            .await
    }

    /// One `MGET`, which the cluster client splits into one `MGET` per slot and answers in
    /// the order asked.
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
                self.query("MGET", &cmd).await
            })
            .await;
        self.metrics.read_many(&result);
        result
    }

    /// One script per slot, sent at once: each slot's entries are written atomically, but a
    /// batch spanning slots is not atomic as a whole (keys sharing a hash tag share a slot).
    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration) -> Result<()> {
        self.metrics
            .set_many
            .timed(async {
                self.limits.check_ttl(ttl)?;
                let mut by_slot: HashMap<u16, Vec<(String, &[u8])>> = HashMap::new();
                for (key, value) in &entries {
                    let full = self.checked_key(key)?;
                    self.limits.check_value(key, value)?;
                    by_slot
                        .entry(key_slot(&self.config.key_prefix, key))
                        .or_default()
                        .push((full, value));
                }
                let ttl_ms = ttl.as_millis() as u64;
                let writes = by_slot.into_iter().map(|(slot, group)| async move {
                    let bytes = group.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + 24;
                    let route = Route::new(slot, SlotAddr::Master);
                    self.eval::<i64>(
                        "EVALSHA set_many",
                        &self.set_many,
                        route,
                        (2 + 2 * group.len(), bytes),
                        |cmd| {
                            cmd.arg(group.len());
                            for (key, _) in &group {
                                cmd.arg(key);
                            }
                            cmd.arg(ttl_ms);
                            for (_, value) in &group {
                                cmd.arg(*value);
                            }
                        },
                    )
                    .await
                });
                for outcome in futures::future::join_all(writes).await {
                    outcome?;
                }
                Ok(())
            })
            .await
    }

    /// `SCAN … MATCH` + `UNLINK` on every master in turn (each master holds its own keys).
    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.metrics
            .delete_prefix
            .timed(async {
                self.limits.check_prefix(prefix)?;
                let pattern = format!("{}*", glob_escape(&self.key(prefix)));
                let mut removed = 0;
                let slots: redis::Value = self
                    .command(
                        "CLUSTER SLOTS",
                        redis::cmd("CLUSTER").arg("SLOTS").clone(),
                        Route::new(0, SlotAddr::Master),
                    )
                    .await?;
                for slot in super::topology::master_slots(slots)? {
                    let mut cursor: u64 = 0;
                    loop {
                        let mut scan = redis::cmd("SCAN");
                        scan.arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(SCAN_COUNT);
                        let (next, keys): (u64, Vec<String>) = self
                            .command("SCAN", scan, Route::new(slot, SlotAddr::Master))
                            .await?;
                        removed += self.unlink(&keys).await?;
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
                Ok(removed)
            })
            .await
    }
}

#[async_trait]
impl RateLimiter for RedisClusterCache {
    /// One `EVALSHA` to the master of the limiter's slot per decision. When the cluster can't
    /// be reached (or the slot's master is being failed over), the configured
    /// [`FailurePolicy`](crate::FailurePolicy) decides and the decision says `fallback: true`.
    async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<RateLimitDecision> {
        let result = self
            .metrics
            .rate_limit
            .timed(async {
                let outcome = self.decide(key, limit, window).await;
                self.config.failure_policy.or_decide(outcome, limit, window)
            })
            .await;
        self.metrics.decided(&result);
        result
    }
}
