//! How one server process shares its channels with other processes.
//!
//! The hub always delivers to its own sockets directly, under its lock, with no hop; the
//! adapter only learns what other nodes must hear (events to relay, changes of this node's
//! part of a channel) and answers what only the whole cluster knows (member lists, counts).
//! [`SingleNode`] is today's one process: it shares nothing and answers nothing, so the hub's
//! own state is the truth. The Redis adapter (`server-redis`) lives in `redis_cluster`.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use serde_json::Value;

use super::hub::{ChannelStats, Hub};

/// A change of this node's part of one channel of one app, in the order the hub made it.
// Read only by the Redis adapter; a build without `server-redis` has no reader.
#[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) enum StateChange {
    /// This node now holds `count` subscriptions to `channel` (0: none).
    Subscriptions { channel: String, count: usize },
    /// A socket of this node joins a presence channel; the cluster answers through
    /// `AppHub::complete_join` (with `socket_id`), and announces the member when it is new.
    Join {
        channel: String,
        socket_id: Option<String>,
        user_id: String,
        user_info: Value,
    },
    /// This node's last socket of `user_id` left the presence channel.
    Leave { channel: String, user_id: String },
}

/// The cluster's answer to a presence join.
// Read only by the Redis adapter; a build without `server-redis` has no reader.
#[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum JoinOutcome {
    /// Joined: every member of the channel over all nodes, sorted by id, as of `version`
    /// (member frames up to that version are already in the list).
    Joined {
        members: Vec<(String, Value)>,
        version: u64,
    },
    /// The channel already has `limit` members over all nodes.
    Full { limit: usize },
    /// The cluster cannot answer now (Redis unreachable): this node's own members stand in.
    Unavailable,
}

/// Whether the node reaches the rest of its cluster.
#[derive(Debug, Clone)]
pub(crate) struct ClusterHealth {
    pub healthy: bool,
    pub detail: String,
}

/// What a node does beyond its own sockets. Everything sync is called under an app's lock,
/// so it must only queue work, never wait.
#[async_trait]
pub(crate) trait ClusterAdapter: Send + Sync {
    /// Whether other nodes share the channels (false: the hub's own state is the truth).
    fn is_shared(&self) -> bool;

    /// Starts background work; the hub is weak so dropping the server stops it.
    fn start(&self, hub: Weak<Hub>) -> infra_core::Result<()>;

    /// Waits until the node reaches the cluster (true), or gives up after `wait`.
    async fn ready(&self, wait: Duration) -> bool;

    /// Sends a frame already delivered to this node's sockets on to the other nodes.
    fn relay(&self, app_id: &str, channel: &str, message: &Utf8Bytes, except: Option<&str>);

    /// Waits until every frame relayed so far has reached the other nodes' bus (or failed to),
    /// so an acknowledged trigger is not lost when this node dies right after answering.
    async fn flush(&self);

    /// Leaves the cluster on a graceful shutdown: writes what is queued, then gives up the
    /// lease and this node's state at once instead of letting survivors wait for the lease.
    async fn leave(&self);

    /// Like `relay`, for a `member_added` / `member_removed` frame of presence `version`.
    #[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
    fn relay_member_event(
        &self,
        app_id: &str,
        channel: &str,
        message: &Utf8Bytes,
        except: Option<&str>,
        version: u64,
    );

    /// Asks every other node to close the connections of a signed-in user.
    fn relay_terminate(&self, app_id: &str, user_id: &str);

    /// Records a change of this node's part of a channel. False when it could not be queued
    /// (the node's whole state is then written again later): a presence join is then the
    /// caller's to answer.
    fn record(&self, app_id: &str, change: StateChange) -> bool;

    /// Occupied channels over all nodes; `None` when only this node's state can answer.
    async fn channels(&self, app_id: &str, prefix: &str) -> Option<BTreeMap<String, ChannelStats>>;

    /// One channel over all nodes (`Some(None)`: unoccupied).
    async fn channel(&self, app_id: &str, name: &str) -> Option<Option<ChannelStats>>;

    /// The user ids of a presence channel over all nodes, sorted.
    async fn users(&self, app_id: &str, name: &str) -> Option<Vec<String>>;

    /// How the node's link to the cluster is.
    fn health(&self) -> ClusterHealth;

    /// Changes recorded but not yet written to the cluster.
    fn queued_changes(&self) -> usize {
        0
    }
}

/// One process that is the whole cluster: no hop, no shared state.
pub(crate) struct SingleNode;

#[async_trait]
impl ClusterAdapter for SingleNode {
    fn is_shared(&self) -> bool {
        false
    }
    fn start(&self, _hub: Weak<Hub>) -> infra_core::Result<()> {
        Ok(())
    }
    async fn ready(&self, _wait: Duration) -> bool {
        true
    }
    fn relay(&self, _app: &str, _channel: &str, _message: &Utf8Bytes, _except: Option<&str>) {}
    async fn flush(&self) {}
    async fn leave(&self) {}
    fn relay_member_event(&self, _: &str, _: &str, _: &Utf8Bytes, _: Option<&str>, _: u64) {}
    fn relay_terminate(&self, _app_id: &str, _user_id: &str) {}
    fn record(&self, _app_id: &str, _change: StateChange) -> bool {
        true
    }
    async fn channels(&self, _: &str, _: &str) -> Option<BTreeMap<String, ChannelStats>> {
        None
    }
    async fn channel(&self, _: &str, _: &str) -> Option<Option<ChannelStats>> {
        None
    }
    async fn users(&self, _: &str, _: &str) -> Option<Vec<String>> {
        None
    }
    fn health(&self) -> ClusterHealth {
        ClusterHealth {
            healthy: true,
            detail: "single node".into(),
        }
    }
}
