//! Keeps the node connected to its cluster's Redis: connects (again, after infra-core's
//! back-off), reads the bus subscription, renews the lease and reaps dead nodes. After every
//! connect, and whenever the lease had run out or a state write failed, the node's whole state
//! is written again (a resync, queued behind the changes already waiting).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use infra_core::Backoff;
use redis::aio::{MultiplexedConnection, PubSub};

use super::bus::RedisBus;
use super::lease;
use super::link::{Link, call};
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
    async fn stay_connected(&self, mut conn: MultiplexedConnection, pubsub: PubSub) {
        let link = &*self.link;
        let mut messages = pubsub.into_on_message();
        let mut beat = tokio::time::interval(link.config.heartbeat());
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return link.failed("the bus subscription", &"connection closed");
                    };
                    let Some(hub) = self.hub.upgrade() else { return };
                    self.bus.dispatch(&*hub, message.get_payload_bytes());
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

/// Opens the command connection and the bus subscription, and takes the lease.
async fn connect(link: &Link) -> std::result::Result<(MultiplexedConnection, PubSub), String> {
    let mut conn = call(link.client.get_multiplexed_async_connection()).await?;
    let mut pubsub = call(link.client.get_async_pubsub()).await?;
    call(pubsub.subscribe(link.keys.bus())).await?;
    lease::heartbeat(link, &mut conn).await?;
    Ok((conn, pubsub))
}
