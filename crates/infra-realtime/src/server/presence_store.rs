//! Where a clustered node's channel state meets the other nodes': the presence store.
//!
//! A hub keeps its own node's part of every channel. On a node of a cluster it also writes each
//! change of that part to the [`StateLog`], under the app's lock, so the changes of one channel
//! reach the store in the order the hub made them; the log only queues, never waits. The
//! [`PresenceStore`] sums every node's parts: it decides the cluster-wide transitions (a
//! channel's first and last subscription, a user's first and last node) and answers the
//! queries only all nodes together can (counts, member lists). What it decides comes back
//! through the [`PresenceHandler`] the node gives it.
//!
//! A single node has no store: its hub decides every transition itself and its own state
//! answers the queries ("local presence").

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

/// A change of this node's part of one channel of one app, in the order the hub made it.
#[derive(Debug, Clone)]
pub(crate) enum StateChange {
    /// This node now holds `count` subscriptions to `channel` (0: none).
    Subscriptions { channel: String, count: usize },
    /// A socket of this node joins a presence channel; the store answers through
    /// [`PresenceHandler::joined`] (with `socket_id`), and announces the member when it is new.
    /// Without `socket_id` (a resync) nobody waits for the answer.
    Join {
        channel: String,
        socket_id: Option<String>,
        user_id: String,
        user_info: Value,
    },
    /// This node's last socket of `user_id` left the presence channel.
    Leave { channel: String, user_id: String },
}

/// The store's answer to a presence join.
#[derive(Debug)]
pub(crate) enum JoinOutcome {
    /// Joined: every member of the channel over all nodes, sorted by id, as of member-list
    /// `version` (member frames up to that version are already in the list).
    Joined {
        members: Vec<(String, Value)>,
        version: u64,
    },
    /// The channel already has `limit` members over all nodes.
    Full { limit: usize },
    /// The store cannot answer now (Redis unreachable, or the node left its cluster): this
    /// node's own members stand in.
    Unavailable,
}

/// A presence join the store has decided.
#[derive(Debug)]
pub(crate) struct JoinAnswer {
    pub channel: String,
    /// The joining socket, when one waits for the answer.
    pub socket_id: Option<String>,
    pub user_id: String,
    pub user_info: Value,
    /// True when the user is new to the channel over all nodes: this node announces it
    /// (`member_added` everywhere, the webhook once) at the answer's member-list version.
    pub new_member: bool,
    pub outcome: JoinOutcome,
}

/// One channel's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelStats {
    pub subscription_count: usize,
    /// Presence channels only.
    pub user_count: Option<usize>,
}

/// The store could not answer (its failure is logged and shows in the node's health); the
/// caller answers from this node's own state instead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreUnavailable;

/// Where a clustered hub writes the changes of its part of the channels.
pub(crate) trait StateLog: Send + Sync {
    /// Records a change; called under the app's lock, so it only queues. False when it could
    /// not be queued (the node's whole state is then written again later): a presence join is
    /// then the hub's to answer.
    fn record(&self, app_id: &str, change: StateChange) -> bool;

    /// Changes recorded but not written yet.
    fn pending(&self) -> usize;
}

/// The cluster-wide sum of every node's channel state.
#[async_trait]
pub(crate) trait PresenceStore: StateLog {
    /// Occupied channels whose names start with `prefix`, with their counts over all nodes.
    async fn channels(
        &self,
        app_id: &str,
        prefix: &str,
    ) -> Result<BTreeMap<String, ChannelStats>, StoreUnavailable>;

    /// One channel's counts over all nodes (`None`: unoccupied).
    async fn channel(
        &self,
        app_id: &str,
        name: &str,
    ) -> Result<Option<ChannelStats>, StoreUnavailable>;

    /// The user ids of a presence channel over all nodes, sorted.
    async fn users(&self, app_id: &str, name: &str) -> Result<Vec<String>, StoreUnavailable>;
}

/// What the store tells the node it serves. Called from the store's own tasks, never under a
/// hub lock.
pub(crate) trait PresenceHandler: Send + Sync {
    /// A channel's first subscription (`occupied`) or its last one went, over all nodes.
    fn occupancy(&self, app_id: &str, channel: String, occupied: bool);

    /// A presence join was decided.
    fn joined(&self, app_id: &str, answer: JoinAnswer);

    /// A user's last node left a presence channel; the member list is at `version` now.
    fn member_left(&self, app_id: &str, channel: String, user_id: String, version: u64);

    /// This node's part of every channel of the app, to write again after the store lost it
    /// (a reconnect, or a lease that ran out while Redis was away).
    fn snapshot(&self, app_id: &str) -> Vec<StateChange>;
}
