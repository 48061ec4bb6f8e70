//! Keeps the node connected to its cluster's Redis: connects (again, after infra-core's
//! back-off), reads the bus subscription, renews the lease and reaps dead nodes. After every
//! connect, and whenever the lease had run out or a state write failed, the node's whole state
//! is written again (a resync, queued behind the changes already waiting).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use infra_core::Backoff;
use redis::cluster::ClusterClientBuilder;
use redis::{ProtocolVersion, PushInfo, PushKind};
use tokio::sync::mpsc;

use super::bus::RedisBus;
use super::keys::BUS_SHARDS;
use super::lease;
use super::link::{Connection, Link, Target, call};
use super::state_queue::{Op, StateQueue};
use crate::server::bus::BusHandler;
use crate::server::presence_store::PresenceHandler;

/// The waits between connection attempts: 100 ms doubling up to 5 s, jittered.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// What the supervisor keeps going; the handlers are weak, so dropping the node stops it.
pub(super) struct Supervisor {
    pub link: Arc<Link>,
    pub bus: Arc<RedisBus>,
    /// The state writer's queue, for resyncs.
    pub ops: Arc<StateQueue>,
    pub hub: Weak<dyn BusHandler>,
    pub node: Weak<dyn PresenceHandler>,
}

impl Supervisor {
    /// Runs until the node is dropped or leaves its cluster.
    pub async fn run(self) {
        let link = &*self.link;
        let mut failures = 0;
        loop {
            if self.node.strong_count() == 0 || link.leaving.load(Ordering::SeqCst) {
                return;
            }
            match connect(link).await {
                Ok((conn, pubsub)) => {
                    failures = 0;
                    tracing::info!(
                        node = %link.config.node_id,
                        prefix = %link.config.key_prefix,
                        "realtime cluster: connected to Redis"
                    );
                    link.set_connection(Some(conn.clone()));
                    // Whatever happened while away, Redis gets this node's state again.
                    self.ops.push_barrier(Op::Resync);
                    self.stay_connected(conn, pubsub).await;
                    link.set_connection(None);
                }
                Err(e) => link.failed("connecting to Redis", &e),
            }
            if self.node.strong_count() == 0 {
                return;
            }
            failures += 1;
            tokio::time::sleep(RECONNECT.delay(failures)).await;
        }
    }

    /// Reads the bus and keeps the lease until the connection fails or the node is gone.
    async fn stay_connected(&self, mut conn: Connection, mut messages: Subscription) {
        let link = &*self.link;
        let mut beat = tokio::time::interval(link.config.heartbeat());
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(payload) = message else {
                        return link.failed("the bus subscription", &"connection closed");
                    };
                    let Some(hub) = self.hub.upgrade() else { return };
                    self.bus.dispatch(&*hub, &payload);
                }
                _ = beat.tick() => {
                    let Some(node) = self.node.upgrade() else { return };
                    if link.leaving.load(Ordering::SeqCst) {
                        return;
                    }
                    match lease::heartbeat(link, &mut conn).await {
                        Ok(true) => {
                            if link.needs_resync.swap(false, Ordering::SeqCst) {
                                self.ops.push_barrier(Op::Resync);
                            }
                        }
                        Ok(false) => {
                            tracing::warn!(node = %link.config.node_id,
                                "realtime cluster: this node's lease had run out; writing its state again");
                            self.ops.push_barrier(Op::Resync);
                        }
                        Err(e) => return link.failed("renewing the lease", &e),
                    }
                    if let Err(e) = lease::reap(link, &*node, &mut conn).await {
                        return link.failed("looking for dead nodes", &e);
                    }
                }
            }
        }
    }
}

/// The bus messages this node receives.
enum Subscription {
    /// Plain pub/sub on its own connection.
    Single(BoxStream<'static, Vec<u8>>),
    /// Sharded pub/sub: the cluster client pushes every shard's messages here, and subscribes
    /// again by itself after a reconnect or a slot's move.
    Cluster(mpsc::UnboundedReceiver<PushInfo>),
}

impl Subscription {
    /// The next message's payload; `None` once the subscription is gone.
    async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Subscription::Single(stream) => stream.next().await,
            Subscription::Cluster(rx) => loop {
                let push = rx.recv().await?;
                // Confirmations and disconnection notices carry no message; the client
                // resubscribes after the latter itself.
                if push.kind != PushKind::SMessage {
                    continue;
                }
                if let Some(redis::Value::BulkString(payload)) = push.data.into_iter().nth(1) {
                    return Some(payload);
                }
            },
        }
    }
}

/// Opens the command connection and the bus subscription, and takes the lease.
async fn connect(link: &Link) -> std::result::Result<(Connection, Subscription), String> {
    let (mut conn, subscription) = match &link.target {
        Target::Single(client) => {
            let conn = call(client.get_multiplexed_async_connection()).await?;
            let mut pubsub = call(client.get_async_pubsub()).await?;
            call(pubsub.subscribe(link.keys.bus())).await?;
            let messages = pubsub
                .into_on_message()
                .map(|m| m.get_payload_bytes().to_vec())
                .boxed();
            (Connection::Single(conn), Subscription::Single(messages))
        }
        Target::Cluster(nodes) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let client = ClusterClientBuilder::new(nodes.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(tx)
                .build()
                .map_err(|e| e.to_string())?;
            let mut conn = call(client.get_async_connection()).await?;
            let shards: Vec<String> = (0..BUS_SHARDS).map(|s| link.keys.bus_shard(s)).collect();
            // One SSUBSCRIBE per shard: a command's channels must share a slot.
            for shard in &shards {
                call(conn.ssubscribe(shard)).await?;
            }
            (Connection::Cluster(conn), Subscription::Cluster(rx))
        }
    };
    lease::heartbeat(link, &mut conn).await?;
    Ok((conn, subscription))
}
