//! What the node's Redis tasks share: the client (one server or Redis Cluster), the one
//! multiplexed connection while Redis is reachable, the node's lease bookkeeping and its last
//! failure.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use infra_core::{Error, Result};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::watch;

use super::keys::Keys;
use super::scripts::Scripts;
use crate::server::cluster_config::{ClusterConfig, REDIS_CLUSTER_NODES_VAR, REDIS_URL_VAR};
use crate::server::server_metrics::ServerMetrics;

/// Where the nodes meet.
pub(super) enum Target {
    /// One Redis server (or a replicated primary): plain pub/sub on one bus channel.
    Single(Box<redis::Client>),
    /// Redis Cluster's seed nodes: sharded pub/sub, and every script's keys in one slot. The
    /// client is built per connection because each carries its own subscription's sender.
    Cluster(Vec<String>),
}

/// A connection to either kind of target; the cluster one routes every command (and every
/// command of a pipeline) to the master of its key's slot and follows MOVED/ASK itself.
#[derive(Clone)]
pub(super) enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// Longest wait for one Redis call before the node counts it as failed.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The node's link to its cluster's Redis. Holds no queue sender, so the tasks it is shared
/// with end when the node drops its own handles.
pub(super) struct Link {
    pub config: ClusterConfig,
    pub keys: Keys,
    pub scripts: Scripts,
    pub target: Target,
    /// The multiplexed connection while Redis is reachable.
    connection: Mutex<Option<Connection>>,
    pub connected: watch::Sender<bool>,
    /// Nodes holding a lease at the last look, this one included.
    pub live_nodes: AtomicUsize,
    last_error: Mutex<Option<String>>,
    /// Tells this process's lease from a predecessor's (or a duplicate's) with the same id.
    pub token: String,
    /// Set by a graceful leave: no more heartbeats.
    pub leaving: AtomicBool,
    /// A state write failed while connected: the next good heartbeat asks for a resync.
    pub needs_resync: AtomicBool,
    /// Held around a heartbeat, so a leave cannot give up the lease while a heartbeat that
    /// would take it again is in flight.
    pub lease_guard: tokio::sync::Mutex<()>,
    /// Counts failed calls to Redis (`infra_realtime_redis_errors_total`).
    metrics: ServerMetrics,
}

impl Link {
    pub fn new(config: ClusterConfig) -> Result<Self> {
        let target = match &config.cluster_nodes {
            Some(nodes) => {
                // Built once here so a bad seed list is an error at start, not at each connect.
                ClusterClient::new(nodes.expose().clone()).map_err(|e| {
                    Error::config(REDIS_CLUSTER_NODES_VAR, format_args!("is not usable: {e}"))
                })?;
                Target::Cluster(nodes.expose().clone())
            }
            None => Target::Single(Box::new(
                redis::Client::open(config.redis_url.expose().as_str()).map_err(|e| {
                    Error::config(REDIS_URL_VAR, format_args!("is not usable: {e}"))
                })?,
            )),
        };
        Ok(Link {
            keys: Keys::new(&config.key_prefix),
            scripts: Scripts::new(),
            target,
            connection: Mutex::new(None),
            connected: watch::Sender::new(false),
            live_nodes: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            token: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            leaving: AtomicBool::new(false),
            needs_resync: AtomicBool::new(false),
            lease_guard: tokio::sync::Mutex::new(()),
            config,
            metrics: ServerMetrics::new(),
        })
    }

    /// The connection, while Redis is reachable.
    pub fn connection(&self) -> Option<Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_connection(&self, connection: Option<Connection>) {
        let up = connection.is_some();
        *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = connection;
        self.connected.send_replace(up);
    }

    /// A write of this node's state failed: Redis may now disagree with the hub.
    pub fn write_failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.needs_resync.store(true, Ordering::SeqCst);
        self.failed(what, error);
    }

    pub fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.metrics.redis_error();
        tracing::warn!(node = %self.config.node_id, error = %error, "realtime cluster: {what}");
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{what}: {error}"));
    }

    /// Whether the nodes meet on Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Runs a Redis call with the call timeout.
pub(super) async fn call<T>(
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}
