//! What a server holds and what waits to leave it, to prove nothing stays behind.

use std::ops::Add;

/// How many things the server holds, to prove nothing stays behind after clients leave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateCounts {
    /// Open connections.
    pub sockets: usize,
    /// Channels with at least one subscriber.
    pub channels: usize,
    /// Presence members over all channels.
    pub members: usize,
    /// Signed-in users.
    pub users: usize,
    /// Webhook events waiting for delivery (at most a bounded backlog).
    pub webhooks_queued: usize,
    /// Webhook events dropped because the backlog was full.
    pub webhooks_dropped: u64,
    /// Changes of this node's state waiting for the cluster's Redis (0 on a single node).
    pub cluster_changes_queued: usize,
}

impl Add for StateCounts {
    type Output = StateCounts;

    fn add(self, other: StateCounts) -> StateCounts {
        StateCounts {
            sockets: self.sockets + other.sockets,
            channels: self.channels + other.channels,
            members: self.members + other.members,
            users: self.users + other.users,
            webhooks_queued: self.webhooks_queued + other.webhooks_queued,
            webhooks_dropped: self.webhooks_dropped + other.webhooks_dropped,
            cluster_changes_queued: self.cluster_changes_queued + other.cluster_changes_queued,
        }
    }
}
