//! The bus over Redis pub/sub: on one server every node publishes on and subscribes to one
//! channel, `p:bus`; on Redis Cluster it is sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis ≥ 7)
//! over `p:bus:0` … `p:bus:15`, a channel's frames always on the same shard (so in order), the
//! shards spread over the masters, and every node subscribed to all of them.
//!
//! Publishing never waits: frames go to a bounded queue that one task drains in the order they
//! were handed over, a pipeline per burst, so one node's frames stay in order. A Redis that is
//! away drops them at once (pub/sub keeps nothing for a node that is away either); one that
//! answers too slowly fills the queue, beyond which frames are dropped and counted. Reading
//! the subscription is the supervisor's; it hands each message to [`RedisBus::dispatch`].

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::keys::{BUS_SHARDS, bus_shard_of};
use super::link::{CALL_TIMEOUT, Link, call};
use crate::server::bus::{Bus, BusHandler};

/// Frames published in one pipeline at most.
const PUBLISH_BATCH: usize = 256;
/// Frames waiting for the publisher at most: a Redis that answers slowly (not an absent one,
/// whose frames are dropped at once) must not make the queue grow without bound.
pub(super) const PUBLISH_QUEUE: usize = 16 * 1024;

/// One message on the bus. Strings are `Cow` because the tagged enum is buffered while
/// decoding, which cannot lend borrowed strings; encoding borrows.
#[derive(Serialize, Deserialize)]
struct BusMessage<'a> {
    /// The node that sent it (nodes skip their own).
    node: Cow<'a, str>,
    app: Cow<'a, str>,
    #[serde(flatten)]
    kind: BusKind<'a>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BusKind<'a> {
    /// A frame to deliver to the channel's subscribers but `except`.
    Event {
        channel: Cow<'a, str>,
        message: Cow<'a, str>,
        except: Option<Cow<'a, str>>,
    },
    /// A `member_added` / `member_removed` frame of a presence channel's member `version`.
    MemberEvent {
        channel: Cow<'a, str>,
        message: Cow<'a, str>,
        except: Option<Cow<'a, str>>,
        version: u64,
    },
    /// Close a signed-in user's connections.
    Terminate { user_id: Cow<'a, str> },
}

/// What the publisher does, in order.
enum Outgoing {
    /// An encoded `BusMessage`, for the sharded bus channel `shard` on Redis Cluster.
    Frame { shard: u64, text: String },
    /// Answer once everything before it was published (or failed to be).
    Flush(oneshot::Sender<()>),
}

/// This node's end of the bus.
pub(super) struct RedisBus {
    node_id: String,
    tx: mpsc::Sender<Outgoing>,
    /// The receiver until `start` hands it to the publisher.
    rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    dropped: Arc<AtomicU64>,
}

impl RedisBus {
    pub fn new(node_id: String) -> Self {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        RedisBus {
            node_id,
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: Arc::default(),
        }
    }

    /// Starts the publisher (once).
    pub fn start(&self, link: Arc<Link>) {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rx) = rx {
            tokio::spawn(publish(link, rx, self.dropped.clone()));
        }
    }

    /// Frames dropped so far: Redis away or not keeping up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, app_id: &str, kind: BusKind<'_>) {
        let shard = match &kind {
            BusKind::Event { channel, .. } | BusKind::MemberEvent { channel, .. } => {
                bus_shard_of(app_id, channel)
            }
            BusKind::Terminate { user_id } => bus_shard_of(app_id, user_id),
        };
        let message = BusMessage {
            node: Cow::Borrowed(&self.node_id),
            app: Cow::Borrowed(app_id),
            kind,
        };
        match serde_json::to_string(&message) {
            Ok(text) => {
                if let Err(mpsc::error::TrySendError::Full(_)) =
                    self.tx.try_send(Outgoing::Frame { shard, text })
                {
                    let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
                    if dropped.is_power_of_two() || dropped == 0 {
                        tracing::warn!(node = %self.node_id, dropped = dropped + 1,
                            "realtime cluster: Redis is not keeping up with the bus; dropping");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "realtime cluster: cannot encode a bus message"),
        }
    }

    /// Hands a message another node published to `handler`; this node's own, and anything
    /// unreadable, are skipped.
    pub fn dispatch(&self, handler: &dyn BusHandler, payload: &[u8]) {
        let message: BusMessage<'_> = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "realtime cluster: unreadable bus message ignored");
                return;
            }
        };
        if message.node == self.node_id {
            return;
        }
        match message.kind {
            BusKind::Event {
                channel,
                message: frame,
                except,
            } => handler.deliver(
                &message.app,
                &channel,
                &Utf8Bytes::from(frame.into_owned()),
                except.as_deref(),
            ),
            BusKind::MemberEvent {
                channel,
                message: frame,
                except,
                version,
            } => handler.deliver_member_event(
                &message.app,
                &channel,
                &Utf8Bytes::from(frame.into_owned()),
                except.as_deref(),
                version,
            ),
            BusKind::Terminate { user_id } => handler.terminate_user(&message.app, &user_id),
        }
    }
}

#[async_trait]
impl Bus for RedisBus {
    fn publish(&self, app_id: &str, channel: &str, message: &Utf8Bytes, except: Option<&str>) {
        self.send(
            app_id,
            BusKind::Event {
                channel: Cow::Borrowed(channel),
                message: Cow::Borrowed(message.as_str()),
                except: except.map(Cow::Borrowed),
            },
        );
    }

    fn publish_member_event(
        &self,
        app_id: &str,
        channel: &str,
        message: &Utf8Bytes,
        except: Option<&str>,
        version: u64,
    ) {
        self.send(
            app_id,
            BusKind::MemberEvent {
                channel: Cow::Borrowed(channel),
                message: Cow::Borrowed(message.as_str()),
                except: except.map(Cow::Borrowed),
                version,
            },
        );
    }

    fn terminate_user(&self, app_id: &str, user_id: &str) {
        self.send(
            app_id,
            BusKind::Terminate {
                user_id: Cow::Borrowed(user_id),
            },
        );
    }

    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let _ = tokio::time::timeout(CALL_TIMEOUT, async {
            if self.tx.send(Outgoing::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        })
        .await;
    }
}

/// Publishes frames in the order they were handed over, a pipeline per burst.
async fn publish(link: Arc<Link>, mut rx: mpsc::Receiver<Outgoing>, dropped: Arc<AtomicU64>) {
    let bus = link.keys.bus();
    let shards: Vec<String> = (0..BUS_SHARDS).map(|s| link.keys.bus_shard(s)).collect();
    let sharded = link.is_cluster();
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut flushed = Vec::new();
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let mut frames = 0u64;
        for outgoing in batch.drain(..) {
            match outgoing {
                Outgoing::Frame { shard, text } if sharded => {
                    let shard = &shards[usize::try_from(shard).unwrap_or(0) % shards.len()];
                    pipe.cmd("SPUBLISH").arg(shard).arg(text).ignore();
                    frames += 1;
                }
                Outgoing::Frame { text, .. } => {
                    pipe.cmd("PUBLISH").arg(&bus).arg(text).ignore();
                    frames += 1;
                }
                Outgoing::Flush(done) => flushed.push(done),
            }
        }
        if frames > 0 {
            match link.connection() {
                Some(mut conn) => {
                    if let Err(e) = call(pipe.query_async::<()>(&mut conn)).await {
                        dropped.fetch_add(frames, Ordering::Relaxed);
                        link.failed("publishing on the bus", &e);
                    }
                }
                None => {
                    dropped.fetch_add(frames, Ordering::Relaxed);
                }
            }
        }
        // Every frame queued before a flush was in this batch or an earlier one.
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what reaches it.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl BusHandler for Recorder {
        fn deliver(&self, app: &str, channel: &str, message: &Utf8Bytes, except: Option<&str>) {
            let line = format!("{app} {channel} {} {except:?}", message.as_str());
            self.0.lock().unwrap().push(line);
        }
        fn deliver_member_event(&self, app: &str, c: &str, m: &Utf8Bytes, _: Option<&str>, v: u64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{app} {c} {} v{v}", m.as_str()));
        }
        fn terminate_user(&self, app: &str, user_id: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{app} terminate {user_id}"));
        }
    }

    #[test]
    fn frames_beyond_the_queue_are_dropped_and_counted() {
        // Not started: no publisher drains the queue, as when Redis answers too slowly.
        let bus = RedisBus::new("n1".into());
        let message = Utf8Bytes::from_static("{}");
        for _ in 0..PUBLISH_QUEUE + 10 {
            bus.publish("1", "c", &message, None);
        }
        assert_eq!(bus.dropped(), 10);
    }

    #[test]
    fn whatever_arrives_on_the_bus_never_brings_a_node_down() {
        let bus = RedisBus::new("n1".into());
        let handler = Recorder::default();
        let garbage: [&[u8]; 10] = [
            b"",
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{}",
            br#"{"node":"other","app":"1"}"#,
            br#"{"node":"other","app":"1","type":"from_a_newer_version","x":1}"#,
            br#"{"node":"other","app":"1","type":"event","channel":7,"message":"m"}"#,
            br#"{"node":"other","app":"1","type":"member_event","channel":"c","message":"m","version":-1}"#,
            br#"{"node":"n1","app":"1","type":"event","channel":"c","message":"own"}"#,
        ];
        for payload in garbage {
            bus.dispatch(&handler, payload);
        }
        assert!(handler.0.lock().unwrap().is_empty(), "nothing got through");
        // Well-formed messages get through, extra fields and all (the hub ignores unknown apps
        // and empty names).
        let good: [&[u8]; 4] = [
            br#"{"node":"other","app":"1","type":"event","channel":"c","message":"m","except":null,"later":true}"#,
            br#"{"node":"other","app":"2","type":"event","channel":"","message":"","except":"1.1"}"#,
            br#"{"node":"other","app":"1","type":"member_event","channel":"c","message":"m","version":4}"#,
            br#"{"node":"other","app":"1","type":"terminate","user_id":""}"#,
        ];
        for payload in good {
            bus.dispatch(&handler, payload);
        }
        assert_eq!(
            *handler.0.lock().unwrap(),
            [
                "1 c m None",
                "2   Some(\"1.1\")",
                "1 c m v4",
                "1 terminate ",
            ]
        );
    }
}
