//! The Redis cluster adapter: N server processes sharing one Redis act as one server.
//!
//! Three tasks per node, so nothing on a connection's path waits for Redis:
//! - the relay publisher: frames this node delivered go to `p:bus`, pipelined in the order
//!   they were handed over (one publisher's events stay in order per channel);
//! - the state writer: changes of this node's part of channels, applied one at a time in the
//!   hub's order through the scripts of `redis_scripts`, which decide cluster-wide transitions;
//! - the supervisor: (re)connects with backoff, reads the bus, renews the node's lease and
//!   cleans up nodes whose lease ran out.
//!
//! While Redis is unreachable the node serves its own clients alone (degraded, in `health`);
//! on reconnect, or when it finds its lease had run out, it writes its whole state again.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use infra_core::{Error, Result};
use redis::aio::{MultiplexedConnection, PubSub};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use super::cluster::{ClusterAdapter, ClusterHealth, JoinOutcome, StateChange};
use super::cluster_config::{ClusterConfig, REDIS_URL_VAR};
use super::hub::{AppHub, ChannelStats, Hub};
use super::protocol::frame;
use super::redis_scripts::{
    Field, Keys, SEP, Scripts, member_field, parse_field, subscriptions_field,
};
use super::state_queue::{Op, StateQueue};
use super::webhook::WebhookEvent;

/// Longest wait for one Redis call before the node counts it as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff bounds.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Frames published in one pipeline at most.
const PUBLISH_BATCH: usize = 256;
/// Relays waiting for the publisher at most: a Redis that answers slowly (not an absent one,
/// whose relays are dropped at once) must not make the queue grow without bound; beyond it
/// relays are dropped and counted.
const RELAY_QUEUE: usize = 16 * 1024;
/// Changes waiting for the state writer at most (each channel's subscription count coalesced);
/// beyond, a change is refused and the node's whole state is written again instead.
const STATE_QUEUE: usize = 16 * 1024;

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

/// What the relay publisher does, in order.
enum Relay {
    /// An encoded `BusMessage`.
    Frame(String),
    /// Answer once everything before it was published (or failed to be).
    Flush(oneshot::Sender<()>),
}

/// Longest wait of a graceful leave.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the tasks share; holds no sender, so dropping the adapter ends the writer tasks.
struct Shared {
    config: ClusterConfig,
    keys: Keys,
    scripts: Scripts,
    client: redis::Client,
    /// The multiplexed connection while Redis is reachable.
    connection: Mutex<Option<MultiplexedConnection>>,
    connected: watch::Sender<bool>,
    live_nodes: AtomicUsize,
    relays_dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Tells this process's lease from a predecessor's (or a duplicate's) with the same id.
    token: String,
    /// Set by a graceful leave: no more heartbeats.
    leaving: AtomicBool,
    /// A state write failed while connected: the next good heartbeat asks for a resync.
    needs_resync: AtomicBool,
    /// Held around a heartbeat, so a leave cannot give up the lease while a heartbeat that
    /// would take it again is in flight.
    lease_guard: tokio::sync::Mutex<()>,
}

impl Shared {
    fn connection(&self) -> Option<MultiplexedConnection> {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_connection(&self, connection: Option<MultiplexedConnection>) {
        let up = connection.is_some();
        *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = connection;
        self.connected.send_replace(up);
    }

    /// A write of this node's state failed: Redis may now disagree with the hub.
    fn write_failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.needs_resync.store(true, Ordering::SeqCst);
        self.failed(what, error);
    }

    fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        tracing::warn!(node = %self.config.node_id, error = %error, "realtime cluster: {what}");
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{what}: {error}"));
    }
}

/// Runs a Redis call with the call timeout.
async fn call<T>(
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// The adapter the hub holds.
pub(crate) struct RedisCluster {
    shared: Arc<Shared>,
    relay_tx: mpsc::Sender<Relay>,
    /// The state writer's queue; closed when the adapter is dropped, which ends the writer.
    ops: Arc<StateQueue>,
    /// The relay receiver until `start` hands it to the publisher.
    relay_rx: Mutex<Option<mpsc::Receiver<Relay>>>,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.ops.close();
    }
}

impl RedisCluster {
    /// An adapter for `config`; connects in the background once started.
    pub fn new<'a>(config: ClusterConfig, app_ids: impl Iterator<Item = &'a str>) -> Result<Self> {
        config.check()?;
        for id in app_ids {
            if id.contains(SEP) || id.contains(':') {
                // The id comes from the apps file or PUSHER_APP_ID; the file is the usual case.
                return Err(Error::config(
                    "INFRA_REALTIME_APPS_FILE",
                    "an app id (or PUSHER_APP_ID) of a clustered server contains `:` or a \
                     control character, which Redis keys cannot tell apart",
                ));
            }
        }
        let client = redis::Client::open(config.redis_url.expose().as_str())
            .map_err(|e| Error::config(REDIS_URL_VAR, format_args!("is not usable: {e}")))?;
        let (relay_tx, relay_rx) = mpsc::channel(RELAY_QUEUE);
        Ok(RedisCluster {
            shared: Arc::new(Shared {
                keys: Keys::new(&config.key_prefix),
                scripts: Scripts::new(),
                client,
                connection: Mutex::new(None),
                connected: watch::Sender::new(false),
                live_nodes: AtomicUsize::new(0),
                relays_dropped: AtomicU64::new(0),
                last_error: Mutex::new(None),
                token: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
                leaving: AtomicBool::new(false),
                needs_resync: AtomicBool::new(false),
                lease_guard: tokio::sync::Mutex::new(()),
                config,
            }),
            relay_tx,
            ops: Arc::new(StateQueue::new(STATE_QUEUE)),
            relay_rx: Mutex::new(Some(relay_rx)),
        })
    }

    fn send_bus(&self, message: &BusMessage<'_>) {
        match serde_json::to_string(message) {
            Ok(text) => {
                if let Err(mpsc::error::TrySendError::Full(_)) =
                    self.relay_tx.try_send(Relay::Frame(text))
                {
                    let dropped = self.shared.relays_dropped.fetch_add(1, Ordering::Relaxed);
                    if dropped.is_power_of_two() || dropped == 0 {
                        tracing::warn!(node = %self.shared.config.node_id, dropped = dropped + 1,
                            "realtime cluster: Redis is not keeping up with relays; dropping");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "realtime cluster: cannot encode a relay"),
        }
    }
}

#[async_trait]
impl ClusterAdapter for RedisCluster {
    fn is_shared(&self) -> bool {
        true
    }

    fn start(&self, hub: Weak<Hub>) -> Result<()> {
        // Without a runtime nothing would drain the queues the hub fills.
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                REDIS_URL_VAR,
                "is set, so the server must be created inside a tokio runtime",
            )
        })?;
        let Some(relay_rx) = self
            .relay_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(());
        };
        runtime.spawn(publish_relays(self.shared.clone(), relay_rx));
        runtime.spawn(write_state(
            self.shared.clone(),
            hub.clone(),
            self.ops.clone(),
        ));
        runtime.spawn(supervise(self.shared.clone(), hub, self.ops.clone()));
        Ok(())
    }

    async fn ready(&self, wait: Duration) -> bool {
        let mut rx = self.shared.connected.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn relay(&self, app_id: &str, channel: &str, message: &Utf8Bytes, except: Option<&str>) {
        self.send_bus(&BusMessage {
            node: Cow::Borrowed(&self.shared.config.node_id),
            app: Cow::Borrowed(app_id),
            kind: BusKind::Event {
                channel: Cow::Borrowed(channel),
                message: Cow::Borrowed(message.as_str()),
                except: except.map(Cow::Borrowed),
            },
        });
    }

    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let _ = tokio::time::timeout(CALL_TIMEOUT, async {
            if self.relay_tx.send(Relay::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        })
        .await;
    }

    async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        self.ops.push_barrier(Op::Leave(tx));
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, rx).await;
        self.flush().await;
    }

    fn relay_member_event(
        &self,
        app_id: &str,
        channel: &str,
        message: &Utf8Bytes,
        except: Option<&str>,
        version: u64,
    ) {
        self.send_bus(&BusMessage {
            node: Cow::Borrowed(&self.shared.config.node_id),
            app: Cow::Borrowed(app_id),
            kind: BusKind::MemberEvent {
                channel: Cow::Borrowed(channel),
                message: Cow::Borrowed(message.as_str()),
                except: except.map(Cow::Borrowed),
                version,
            },
        });
    }

    fn relay_terminate(&self, app_id: &str, user_id: &str) {
        self.send_bus(&BusMessage {
            node: Cow::Borrowed(&self.shared.config.node_id),
            app: Cow::Borrowed(app_id),
            kind: BusKind::Terminate {
                user_id: Cow::Borrowed(user_id),
            },
        });
    }

    fn queued_changes(&self) -> usize {
        self.ops.len()
    }

    fn record(&self, app_id: &str, change: StateChange) -> bool {
        self.ops.push_change(app_id, change)
    }

    async fn channels(&self, app_id: &str, prefix: &str) -> Option<BTreeMap<String, ChannelStats>> {
        let mut conn = self.shared.connection()?;
        let keys = &self.shared.keys;
        let result = call(async {
            let mut names: Vec<String> = redis::cmd("SMEMBERS")
                .arg(keys.channels(app_id))
                .query_async(&mut conn)
                .await?;
            names.retain(|n| n.starts_with(prefix));
            names.sort();
            let mut counts = redis::pipe();
            for name in &names {
                counts.cmd("HVALS").arg(keys.subscriptions(app_id, name));
                counts.cmd("HLEN").arg(keys.members(app_id, name));
            }
            let answers: Vec<redis::Value> = if names.is_empty() {
                Vec::new()
            } else {
                counts.query_async(&mut conn).await?
            };
            let mut found = BTreeMap::new();
            for (name, pair) in names.into_iter().zip(answers.chunks(2)) {
                let [subs, users] = pair else { continue };
                if let Some(stats) = stats_from(&name, subs, users)? {
                    found.insert(name, stats);
                }
            }
            Ok(found)
        })
        .await;
        result
            .map_err(|e| self.shared.failed("channel query", &e))
            .ok()
    }

    async fn channel(&self, app_id: &str, name: &str) -> Option<Option<ChannelStats>> {
        let mut conn = self.shared.connection()?;
        let keys = &self.shared.keys;
        let result = call(async {
            let (subs, users): (redis::Value, redis::Value) = redis::pipe()
                .cmd("HVALS")
                .arg(keys.subscriptions(app_id, name))
                .cmd("HLEN")
                .arg(keys.members(app_id, name))
                .query_async(&mut conn)
                .await?;
            stats_from(name, &subs, &users)
        })
        .await;
        result
            .map_err(|e| self.shared.failed("channel query", &e))
            .ok()
    }

    async fn users(&self, app_id: &str, name: &str) -> Option<Vec<String>> {
        let mut conn = self.shared.connection()?;
        let key = self.shared.keys.members(app_id, name);
        let result = call(async {
            let mut ids: Vec<String> = redis::cmd("HKEYS").arg(key).query_async(&mut conn).await?;
            ids.sort();
            Ok(ids)
        })
        .await;
        result
            .map_err(|e| self.shared.failed("users query", &e))
            .ok()
    }

    fn health(&self) -> ClusterHealth {
        let config = &self.shared.config;
        if *self.shared.connected.borrow() {
            ClusterHealth {
                healthy: true,
                detail: format!(
                    "node `{}` of cluster `{}` with {} live node(s) over Redis",
                    config.node_id,
                    config.key_prefix,
                    self.shared.live_nodes.load(Ordering::Relaxed)
                ),
            }
        } else {
            let error = self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "not connected yet".into());
            ClusterHealth {
                healthy: false,
                detail: format!(
                    "node `{}` cannot reach the cluster's Redis ({error}); serving its own \
                     clients only ({} relayed frame(s) dropped)",
                    config.node_id,
                    self.shared.relays_dropped.load(Ordering::Relaxed)
                ),
            }
        }
    }
}

/// Counts from `HVALS subs` and `HLEN members`; `None` when no node holds the channel.
fn stats_from(
    name: &str,
    subs: &redis::Value,
    users: &redis::Value,
) -> redis::RedisResult<Option<ChannelStats>> {
    let per_node: Vec<usize> = redis::from_redis_value_ref(subs)?;
    let users: usize = redis::from_redis_value_ref(users)?;
    let subscription_count: usize = per_node.iter().sum();
    Ok((subscription_count > 0).then(|| ChannelStats {
        subscription_count,
        user_count: name.starts_with("presence-").then_some(users),
    }))
}

/// Publishes relayed frames in the order they were handed over, a pipeline per burst.
async fn publish_relays(shared: Arc<Shared>, mut rx: mpsc::Receiver<Relay>) {
    let bus = shared.keys.bus();
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut flushed = Vec::new();
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let mut frames = 0u64;
        for relay in batch.drain(..) {
            match relay {
                Relay::Frame(message) => {
                    pipe.cmd("PUBLISH").arg(&bus).arg(message).ignore();
                    frames += 1;
                }
                Relay::Flush(done) => flushed.push(done),
            }
        }
        if frames > 0 {
            match shared.connection() {
                Some(mut conn) => {
                    if let Err(e) = call(pipe.query_async::<()>(&mut conn)).await {
                        shared.relays_dropped.fetch_add(frames, Ordering::Relaxed);
                        shared.failed("relaying frames", &e);
                    }
                }
                None => {
                    shared.relays_dropped.fetch_add(frames, Ordering::Relaxed);
                }
            }
        }
        // Every frame queued before a flush was in this batch or an earlier one.
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Applies this node's state changes one at a time, in the order the hub made them.
async fn write_state(shared: Arc<Shared>, hub: Weak<Hub>, ops: Arc<StateQueue>) {
    let mut left = false;
    while let Some(op) = ops.pop().await {
        let Some(hub) = hub.upgrade() else { return };
        match op {
            // Once the node gave up its lease and left the node set, nothing it wrote would
            // ever be reaped: what comes later (connections outliving the shutdown) stays
            // local, and joins are answered from this node's own members.
            Op::Change {
                app,
                change:
                    StateChange::Join {
                        channel,
                        socket_id: Some(socket_id),
                        ..
                    },
            } if left => {
                if let Some(app) = hub.by_id(&app) {
                    app.complete_join(&socket_id, &channel, JoinOutcome::Unavailable);
                }
            }
            Op::Change { .. } | Op::Resync if left => {}
            Op::Change { app, change } => {
                if let Some(app) = hub.by_id(&app) {
                    apply(&shared, app, change).await;
                }
            }
            Op::Resync => resync(&shared, &hub).await,
            Op::Leave(done) => {
                leave(&shared, &hub).await;
                left = true;
                let _ = done.send(());
            }
        }
    }
}

/// Writes one change and acts on the transition Redis decided.
async fn apply(shared: &Shared, app: &AppHub, change: StateChange) {
    let keys = &shared.keys;
    let node = &shared.config.node_id;
    let id = app.config.id.as_str();
    let Some(mut conn) = shared.connection() else {
        // Redis is away: joins are answered from this node; the rest is written again by
        // the resync after the reconnect.
        if let StateChange::Join {
            channel,
            socket_id: Some(socket_id),
            ..
        } = change
        {
            app.complete_join(&socket_id, &channel, JoinOutcome::Unavailable);
        }
        return;
    };
    match change {
        StateChange::Subscriptions { channel, count } => {
            let result: std::result::Result<i64, String> = call(
                shared
                    .scripts
                    .subscriptions
                    .key(keys.subscriptions(id, &channel))
                    .key(keys.channels(id))
                    .key(keys.node_state(node))
                    .key(keys.nodes())
                    .arg(node)
                    .arg(&channel)
                    .arg(count)
                    .arg(subscriptions_field(id, &channel))
                    .invoke_async(&mut conn),
            )
            .await;
            match result {
                Ok(1) => app.webhook(WebhookEvent::ChannelOccupied { channel }),
                Ok(-1) => app.webhook(WebhookEvent::ChannelVacated { channel }),
                Ok(_) => {}
                Err(e) => shared.write_failed("recording subscriptions", &e),
            }
        }
        StateChange::Join {
            channel,
            socket_id,
            user_id,
            user_info,
        } => {
            let limit = app.config.limits.max_presence_members;
            let result: std::result::Result<(i64, i64, Vec<String>, u64), String> = call(
                shared
                    .scripts
                    .join
                    .key(keys.members(id, &channel))
                    .key(keys.infos(id, &channel))
                    .key(keys.node_state(node))
                    .key(keys.version(id, &channel))
                    .key(keys.nodes())
                    .arg(&user_id)
                    .arg(user_info.to_string())
                    .arg(limit)
                    .arg(member_field(id, &channel, &user_id))
                    .arg(node)
                    .invoke_async(&mut conn),
            )
            .await;
            let (outcome, new_member) = match result {
                Ok((0, _, _, _)) => (JoinOutcome::Full { limit }, None),
                Ok((_, new, flat, version)) => {
                    // Before announcing: a version that went back must not hide this frame
                    // (or later ones) from this node's sockets.
                    app.cap_presence_versions(&channel, version);
                    (
                        JoinOutcome::Joined {
                            members: members_from(&flat),
                            version,
                        },
                        (new == 1).then_some(version),
                    )
                }
                Err(e) => {
                    shared.write_failed("recording a presence join", &e);
                    (JoinOutcome::Unavailable, None)
                }
            };
            // Announce before answering the joiner: the relay is then on its way to Redis
            // before anyone can learn of the join and join elsewhere, so a later joiner finds
            // the member in its list and (its subscription still pending when the relay lands)
            // is not told a second time.
            if let Some(version) = new_member {
                let added = frame(
                    "pusher_internal:member_added",
                    Some(&channel),
                    &json!({"user_id": user_id, "user_info": user_info}),
                );
                app.publish_member_event(
                    &channel,
                    Utf8Bytes::from(added),
                    socket_id.as_deref(),
                    version,
                );
                app.webhook(WebhookEvent::MemberAdded {
                    channel: channel.clone(),
                    user_id,
                });
            }
            if let Some(socket_id) = &socket_id {
                app.complete_join(socket_id, &channel, outcome);
            }
        }
        StateChange::Leave { channel, user_id } => {
            let result: std::result::Result<u64, String> = call(
                shared
                    .scripts
                    .leave
                    .key(keys.members(id, &channel))
                    .key(keys.infos(id, &channel))
                    .key(keys.node_state(node))
                    .key(keys.version(id, &channel))
                    .arg(&user_id)
                    .arg(member_field(id, &channel, &user_id))
                    .invoke_async(&mut conn),
            )
            .await;
            match result {
                Ok(0) => {}
                Ok(version) => announce_removed(app, channel, user_id, version),
                Err(e) => shared.write_failed("recording a presence leave", &e),
            }
        }
    }
}

/// `member_removed` to the channel on every node, and its webhook (once: the caller is the
/// one node Redis told the user is gone).
fn announce_removed(app: &AppHub, channel: String, user_id: String, version: u64) {
    let removed = frame(
        "pusher_internal:member_removed",
        Some(&channel),
        &json!({"user_id": user_id}),
    );
    app.publish_member_event(&channel, Utf8Bytes::from(removed), None, version);
    app.webhook(WebhookEvent::MemberRemoved { channel, user_id });
}

/// `{user, info JSON, …}` from the join script, sorted by user id.
fn members_from(flat: &[String]) -> Vec<(String, Value)> {
    let mut members: Vec<(String, Value)> = flat
        .chunks(2)
        .filter_map(|pair| match pair {
            [user, info] => Some((
                user.clone(),
                serde_json::from_str(info).unwrap_or(Value::Null),
            )),
            _ => None,
        })
        .collect();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members
}

/// Makes Redis hold exactly this node's state: undoes what it no longer has, writes what
/// is missing. Transitions it causes are announced like any other.
async fn resync(shared: &Shared, hub: &Hub) {
    let Some(mut conn) = shared.connection() else {
        return;
    };
    let recorded: HashMap<String, String> = match call(
        redis::cmd("HGETALL")
            .arg(shared.keys.node_state(&shared.config.node_id))
            .query_async(&mut conn),
    )
    .await
    {
        Ok(recorded) => recorded,
        Err(e) => return shared.write_failed("reading this node's state", &e),
    };
    let mut wanted: HashMap<String, (usize, StateChange)> = HashMap::new();
    for (index, app) in hub.apps().iter().enumerate() {
        for change in app.snapshot() {
            let field = match &change {
                StateChange::Subscriptions { channel, .. } => {
                    subscriptions_field(&app.config.id, channel)
                }
                StateChange::Join {
                    channel, user_id, ..
                } => member_field(&app.config.id, channel, user_id),
                StateChange::Leave { .. } => continue,
            };
            wanted.insert(field, (index, change));
        }
    }
    for field in recorded.keys().filter(|f| !wanted.contains_key(*f)) {
        let (app, change) = match parse_field(field) {
            Some(Field::Subscriptions { app, channel }) => (
                app,
                StateChange::Subscriptions {
                    channel: channel.to_owned(),
                    count: 0,
                },
            ),
            Some(Field::Member {
                app,
                channel,
                user_id,
            }) => (
                app,
                StateChange::Leave {
                    channel: channel.to_owned(),
                    user_id: user_id.to_owned(),
                },
            ),
            None => continue,
        };
        if let Some(app) = hub.by_id(app) {
            apply(shared, app, change).await;
        }
    }
    for (field, (index, change)) in wanted {
        let current = recorded.get(&field);
        let up_to_date = match &change {
            StateChange::Subscriptions { count, .. } => {
                current.is_some_and(|c| *c == count.to_string())
            }
            _ => current.is_some(),
        };
        if !up_to_date {
            apply(shared, &hub.apps()[index], change).await;
        }
    }
}

/// Gives up the lease, then undoes this node's state with the same script survivors use on
/// a dead node, announcing what that changes.
async fn leave(shared: &Shared, hub: &Hub) {
    shared.leaving.store(true, Ordering::SeqCst);
    let _lease = shared.lease_guard.lock().await;
    let Some(mut conn) = shared.connection() else {
        return;
    };
    let node = &shared.config.node_id;
    let keys = &shared.keys;
    let dropped: std::result::Result<(), String> = call(
        redis::cmd("DEL")
            .arg(keys.lease(node))
            .query_async(&mut conn),
    )
    .await;
    if let Err(e) = dropped {
        return shared.failed("giving up the lease", &e);
    }
    if let Err(e) = reap_node(shared, hub, &mut conn, node).await {
        shared.failed("removing this node's state", &e);
    }
    tracing::info!(node = %node, "realtime cluster: left the cluster");
}

/// Keeps the node connected: connects, reads the bus, renews the lease, reaps dead nodes;
/// on any failure drops the connection and tries again after a growing pause.
async fn supervise(shared: Arc<Shared>, hub: Weak<Hub>, ops: Arc<StateQueue>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if hub.strong_count() == 0 || shared.leaving.load(Ordering::SeqCst) {
            return;
        }
        match connect(&shared).await {
            Ok((conn, pubsub)) => {
                backoff = FIRST_BACKOFF;
                tracing::info!(
                    node = %shared.config.node_id,
                    prefix = %shared.config.key_prefix,
                    "realtime cluster: connected to Redis"
                );
                shared.set_connection(Some(conn.clone()));
                // Whatever happened while away, Redis gets this node's state again.
                ops.push_barrier(Op::Resync);
                stay_connected(&shared, &hub, conn, pubsub, &ops).await;
                shared.set_connection(None);
            }
            Err(e) => shared.failed("connecting to Redis", &e),
        }
        if hub.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Opens the command connection and the bus subscription, and takes the lease.
async fn connect(shared: &Shared) -> std::result::Result<(MultiplexedConnection, PubSub), String> {
    let mut conn = call(shared.client.get_multiplexed_async_connection()).await?;
    let mut pubsub = call(shared.client.get_async_pubsub()).await?;
    call(pubsub.subscribe(shared.keys.bus())).await?;
    heartbeat(shared, &mut conn).await?;
    Ok((conn, pubsub))
}

/// Renews the lease; `Ok(false)` when this process did not hold it any more (survivors may
/// have reaped this node, or a predecessor with the same id left state behind).
async fn heartbeat(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
) -> std::result::Result<bool, String> {
    let node = &shared.config.node_id;
    let lease_ms = u64::try_from(shared.config.lease.as_millis()).unwrap_or(u64::MAX);
    let _lease = shared.lease_guard.lock().await;
    if shared.leaving.load(Ordering::SeqCst) {
        return Ok(true);
    }
    let held: i64 = call(
        shared
            .scripts
            .heartbeat
            .key(shared.keys.lease(node))
            .key(shared.keys.nodes())
            .arg(node)
            .arg(lease_ms)
            .arg(&shared.token)
            .invoke_async(conn),
    )
    .await?;
    if held == -1 {
        tracing::warn!(node = %node,
            "realtime cluster: another process held this node id's lease (a predecessor, or \
             two live nodes share INFRA_REALTIME_NODE_ID)");
    }
    Ok(held == 1)
}

async fn stay_connected(
    shared: &Shared,
    hub: &Weak<Hub>,
    mut conn: MultiplexedConnection,
    pubsub: PubSub,
    ops: &StateQueue,
) {
    let mut messages = pubsub.into_on_message();
    let mut beat = tokio::time::interval(shared.config.heartbeat());
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return shared.failed("the bus subscription", &"connection closed");
                };
                let Some(hub) = hub.upgrade() else { return };
                dispatch(shared, &hub, message.get_payload_bytes());
            }
            _ = beat.tick() => {
                let Some(hub) = hub.upgrade() else { return };
                if shared.leaving.load(Ordering::SeqCst) {
                    return;
                }
                match heartbeat(shared, &mut conn).await {
                    Ok(true) => {
                        if shared.needs_resync.swap(false, Ordering::SeqCst) {
                            ops.push_barrier(Op::Resync);
                        }
                    }
                    Ok(false) => {
                        tracing::warn!(node = %shared.config.node_id,
                            "realtime cluster: this node's lease had run out; writing its state again");
                        ops.push_barrier(Op::Resync);
                    }
                    Err(e) => return shared.failed("renewing the lease", &e),
                }
                if let Err(e) = reap(shared, &hub, &mut conn).await {
                    return shared.failed("looking for dead nodes", &e);
                }
            }
        }
    }
}

/// Delivers a frame another node relayed to this node's sockets.
fn dispatch(shared: &Shared, hub: &Hub, payload: &[u8]) {
    let message: BusMessage<'_> = match serde_json::from_slice(payload) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(error = %e, "realtime cluster: unreadable bus message ignored");
            return;
        }
    };
    if message.node == shared.config.node_id {
        return;
    }
    let Some(app) = hub.by_id(&message.app) else {
        return;
    };
    match message.kind {
        BusKind::Event {
            channel,
            message,
            except,
        } => app.deliver_here(
            &channel,
            &Utf8Bytes::from(message.into_owned()),
            except.as_deref(),
        ),
        BusKind::MemberEvent {
            channel,
            message,
            except,
            version,
        } => app.deliver_member_event_here(
            &channel,
            &Utf8Bytes::from(message.into_owned()),
            except.as_deref(),
            version,
        ),
        BusKind::Terminate { user_id } => {
            app.terminate_here(&user_id);
        }
    }
}

/// Undoes the state of every node whose lease is gone, announcing what that changes.
async fn reap(
    shared: &Shared,
    hub: &Hub,
    conn: &mut MultiplexedConnection,
) -> std::result::Result<(), String> {
    let keys = &shared.keys;
    let nodes: Vec<String> =
        call(redis::cmd("SMEMBERS").arg(keys.nodes()).query_async(conn)).await?;
    let mut live = 0;
    for node in &nodes {
        if *node == shared.config.node_id || !reap_node(shared, hub, conn, node).await? {
            live += 1;
        }
    }
    shared.live_nodes.store(live, Ordering::Relaxed);
    Ok(())
}

/// Undoes one node's state when its lease is gone; false when the node is alive. The script
/// does it atomically and only once, so exactly one node announces the consequences.
async fn reap_node(
    shared: &Shared,
    hub: &Hub,
    conn: &mut MultiplexedConnection,
    node: &str,
) -> std::result::Result<bool, String> {
    let keys = &shared.keys;
    let undone: Option<Vec<String>> = call(
        shared
            .scripts
            .reap
            .key(keys.lease(node))
            .key(keys.node_state(node))
            .key(keys.nodes())
            .arg(keys.prefix())
            .arg(node)
            .invoke_async(conn),
    )
    .await?;
    let Some(undone) = undone else {
        return Ok(false);
    };
    if !undone.is_empty() && node != shared.config.node_id {
        tracing::warn!(dead = %node, "realtime cluster: a node's lease ran out; its state is cleaned up");
    }
    let entries: Vec<&[String]> = undone.chunks(5).collect();
    // Members go before the channel they emptied, as when they leave one by one.
    for entry in entries.iter().filter(|e| e[0] == "r") {
        if let [_, app, channel, user, version] = entry
            && let Some(app) = hub.by_id(app)
        {
            let version = version.parse().unwrap_or(u64::MAX);
            announce_removed(app, channel.clone(), user.clone(), version);
        }
    }
    for entry in entries.iter().filter(|e| e[0] == "v") {
        if let [_, app, channel, _, _] = entry
            && let Some(app) = hub.by_id(app)
        {
            app.webhook(WebhookEvent::ChannelVacated {
                channel: channel.clone(),
            });
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_beyond_the_queue_are_dropped_and_counted() {
        // Not started: no publisher drains the queue, as when Redis answers too slowly.
        let config = ClusterConfig::new("redis://127.0.0.1:1").unwrap();
        let cluster = RedisCluster::new(config, ["1"].into_iter()).unwrap();
        let message = Utf8Bytes::from_static("{}");
        for _ in 0..RELAY_QUEUE + 10 {
            cluster.relay("1", "c", &message, None);
        }
        assert_eq!(cluster.shared.relays_dropped.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn whatever_arrives_on_the_bus_never_brings_a_node_down() {
        use super::super::app::{AppConfig, ServerConfig};
        let config = ClusterConfig::new("redis://127.0.0.1:1").unwrap();
        let cluster = Arc::new(RedisCluster::new(config, ["1"].into_iter()).unwrap());
        let hub = Hub::new(
            ServerConfig::new(vec![AppConfig::new("1", "key", "secret")]),
            cluster.clone(),
        );
        let app = hub.by_id("1").unwrap();
        let (tx, mut rx) = super::super::outbox::outbox(8, 1 << 20);
        app.register("1.1", tx, Arc::default(), None).unwrap();
        app.subscribe("1.1", "c", None).ok().unwrap();
        let _ = rx.try_recv();
        let garbage: [&[u8]; 12] = [
            b"",
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{}",
            br#"{"node":"other","app":"1"}"#,
            br#"{"node":"other","app":"1","type":"from_a_newer_version","x":1}"#,
            br#"{"node":"other","app":"1","type":"event","channel":7,"message":"m"}"#,
            br#"{"node":"other","app":"1","type":"member_event","channel":"c","message":"m","version":-1}"#,
            br#"{"node":"other","app":"2","type":"event","channel":"c","message":"m"}"#,
            br#"{"node":"other","app":"1","type":"terminate","user_id":""}"#,
            br#"{"node":"other","app":"1","type":"event","channel":"","message":""}"#,
        ];
        for payload in garbage {
            dispatch(&cluster.shared, &hub, payload);
        }
        assert!(rx.try_recv().is_none(), "nothing reached the subscriber");
        // A well-formed relay still gets through, extra fields and all.
        let good = br#"{"node":"other","app":"1","type":"event","channel":"c","message":"m","except":null,"later":true}"#;
        dispatch(&cluster.shared, &hub, good);
        assert_eq!(rx.try_recv().unwrap().as_str(), "m");
    }
}
