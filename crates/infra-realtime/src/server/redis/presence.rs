//! The presence store over Redis: every node's part of every channel, summed by the scripts.
//!
//! The hubs record their changes in a [`StateQueue`] (never waiting: they hold their lock);
//! one task, the state writer, applies them one at a time in that order through the scripts,
//! which decide the cluster-wide transitions, and tells the node what they decided. While
//! Redis is unreachable a join is answered from the node's own members and the rest waits for
//! the resync that follows the reconnect, which writes the node's whole state again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::oneshot;

use super::keys::{Field, held_field, member_field, parse_field, subscriptions_field};
use super::lease;
use super::link::{Connection, Link, call};
use super::state_queue::{Op, StateQueue};
use crate::server::presence_store::{
    ChannelStats, JoinAnswer, JoinOutcome, PresenceHandler, PresenceStore, StateChange, StateLog,
    StoreUnavailable,
};

/// Changes waiting for the state writer at most (each channel's subscription count coalesced);
/// beyond, a change is refused and the node's whole state is written again instead.
const STATE_QUEUE: usize = 16 * 1024;
/// Longest wait of a graceful leave.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// This node's end of the presence store.
pub(super) struct RedisPresence {
    link: Arc<Link>,
    /// The state writer's queue; closed when the store is dropped, which ends the writer.
    ops: Arc<StateQueue>,
    /// Each app's `max_presence_members`, by app id: the apps whose changes are written.
    member_limits: Arc<HashMap<String, usize>>,
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        self.ops.close();
    }
}

impl RedisPresence {
    pub fn new(link: Arc<Link>, member_limits: HashMap<String, usize>) -> Self {
        RedisPresence {
            link,
            ops: Arc::new(StateQueue::new(STATE_QUEUE)),
            member_limits: Arc::new(member_limits),
        }
    }

    /// The writer's queue, for the supervisor's resyncs.
    pub fn queue(&self) -> Arc<StateQueue> {
        self.ops.clone()
    }

    /// Starts the state writer.
    pub fn start(&self, handler: Weak<dyn PresenceHandler>) {
        tokio::spawn(write_state(
            self.link.clone(),
            self.ops.clone(),
            self.member_limits.clone(),
            handler,
        ));
    }

    /// Writes what is queued, then gives up the lease and this node's state (waits at most
    /// [`LEAVE_TIMEOUT`]).
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        self.ops.push_barrier(Op::Leave(tx));
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, rx).await;
    }
}

impl StateLog for RedisPresence {
    fn record(&self, app_id: &str, change: StateChange) -> bool {
        self.ops.push_change(app_id, change)
    }

    fn pending(&self) -> usize {
        self.ops.len()
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn channels(
        &self,
        app_id: &str,
        prefix: &str,
    ) -> Result<BTreeMap<String, ChannelStats>, StoreUnavailable> {
        let mut conn = self.link.connection().ok_or(StoreUnavailable)?;
        let keys = &self.link.keys;
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
        result.map_err(|e| self.unavailable("channel query", &e))
    }

    async fn channel(
        &self,
        app_id: &str,
        name: &str,
    ) -> Result<Option<ChannelStats>, StoreUnavailable> {
        let mut conn = self.link.connection().ok_or(StoreUnavailable)?;
        let keys = &self.link.keys;
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
        result.map_err(|e| self.unavailable("channel query", &e))
    }

    async fn users(&self, app_id: &str, name: &str) -> Result<Vec<String>, StoreUnavailable> {
        let mut conn = self.link.connection().ok_or(StoreUnavailable)?;
        let key = self.link.keys.members(app_id, name);
        let result = call(async {
            let mut ids: Vec<String> = redis::cmd("HKEYS").arg(key).query_async(&mut conn).await?;
            ids.sort();
            Ok(ids)
        })
        .await;
        result.map_err(|e| self.unavailable("users query", &e))
    }
}

impl RedisPresence {
    fn unavailable(&self, what: &str, error: &str) -> StoreUnavailable {
        self.link.failed(what, &error);
        StoreUnavailable
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

/// What the state writer works with.
struct Writer {
    link: Arc<Link>,
    member_limits: Arc<HashMap<String, usize>>,
    handler: Weak<dyn PresenceHandler>,
}

/// Applies this node's state changes one at a time, in the order the hubs made them.
async fn write_state(
    link: Arc<Link>,
    ops: Arc<StateQueue>,
    member_limits: Arc<HashMap<String, usize>>,
    handler: Weak<dyn PresenceHandler>,
) {
    let writer = Writer {
        link,
        member_limits,
        handler,
    };
    let mut left = false;
    while let Some(op) = ops.pop().await {
        let Some(handler) = writer.handler.upgrade() else {
            return;
        };
        let handler = &*handler;
        match op {
            // Once the node gave up its lease and left the node set, nothing it wrote would
            // ever be reaped: what comes later (connections outliving the shutdown) stays
            // local, and joins are answered from this node's own members.
            Op::Change {
                app,
                change: change @ StateChange::Join { .. },
            } if left => unavailable_join(handler, &app, change),
            Op::Change { .. } | Op::Resync if left => {}
            Op::Change { app, change } => writer.apply(handler, &app, change).await,
            Op::Resync => writer.resync(handler).await,
            Op::Leave(done) => {
                lease::give_up(&writer.link, handler).await;
                left = true;
                let _ = done.send(());
            }
        }
    }
}

/// Answers a join from the node's own members (nothing to answer for a resync's join).
fn unavailable_join(handler: &dyn PresenceHandler, app: &str, change: StateChange) {
    if let StateChange::Join {
        channel,
        socket_id: Some(socket_id),
        user_id,
        user_info,
    } = change
    {
        handler.joined(
            app,
            JoinAnswer {
                channel,
                socket_id: Some(socket_id),
                user_id,
                user_info,
                new_member: false,
                outcome: JoinOutcome::Unavailable,
            },
        );
    }
}

impl Writer {
    /// Writes one change and tells the node the transition Redis decided.
    async fn apply(&self, handler: &dyn PresenceHandler, app: &str, change: StateChange) {
        let Some(&limit) = self.member_limits.get(app) else {
            return;
        };
        let link = &*self.link;
        let keys = &link.keys;
        let node = &link.config.node_id;
        let Some(mut conn) = link.connection() else {
            // Redis is away: joins are answered from this node; the rest is written again by
            // the resync after the reconnect.
            return unavailable_join(handler, app, change);
        };
        match change {
            StateChange::Subscriptions { channel, count } => {
                let field = subscriptions_field(app, &channel);
                let result: std::result::Result<i64, String> = async {
                    // The index first when adding and last when removing: a node that dies in
                    // between leaves nothing a survivor cannot find.
                    if count > 0 {
                        index(link, &mut conn, &field, Some(count)).await?;
                    }
                    let change = call(
                        link.scripts
                            .subscriptions
                            .key(keys.subscriptions(app, &channel))
                            .arg(node)
                            .arg(count)
                            .invoke_async(&mut conn),
                    )
                    .await?;
                    if change != 0 {
                        record_occupancy(link, &mut conn, app, &channel, change == 1).await?;
                    }
                    if count == 0 {
                        index(link, &mut conn, &field, None).await?;
                    }
                    Ok(change)
                }
                .await;
                match result {
                    Ok(1) => handler.occupancy(app, channel, true),
                    Ok(-1) => handler.occupancy(app, channel, false),
                    Ok(_) => {}
                    Err(e) => link.write_failed("recording subscriptions", &e),
                }
            }
            StateChange::Join {
                channel,
                socket_id,
                user_id,
                user_info,
            } => {
                let field = member_field(app, &channel, &user_id);
                let result: std::result::Result<(i64, i64, Vec<String>, u64), String> = async {
                    index(link, &mut conn, &field, Some(1)).await?;
                    let answer: (i64, i64, Vec<String>, u64) = call(
                        link.scripts
                            .join
                            .key(keys.members(app, &channel))
                            .key(keys.infos(app, &channel))
                            .key(keys.held(app, &channel))
                            .key(keys.version(app, &channel))
                            .arg(&user_id)
                            .arg(user_info.to_string())
                            .arg(limit)
                            .arg(held_field(node, &user_id))
                            .invoke_async(&mut conn),
                    )
                    .await?;
                    if answer.0 == 0 {
                        index(link, &mut conn, &field, None).await?;
                    }
                    Ok(answer)
                }
                .await;
                let (outcome, new_member) = match result {
                    Ok((0, _, _, _)) => (JoinOutcome::Full { limit }, false),
                    Ok((_, new, flat, version)) => (
                        JoinOutcome::Joined {
                            members: members_from(&flat),
                            version,
                        },
                        new == 1,
                    ),
                    Err(e) => {
                        link.write_failed("recording a presence join", &e);
                        (JoinOutcome::Unavailable, false)
                    }
                };
                handler.joined(
                    app,
                    JoinAnswer {
                        channel,
                        socket_id,
                        user_id,
                        user_info,
                        new_member,
                        outcome,
                    },
                );
            }
            StateChange::Leave { channel, user_id } => {
                let result: std::result::Result<u64, String> = async {
                    let version = call(
                        link.scripts
                            .leave
                            .key(keys.members(app, &channel))
                            .key(keys.infos(app, &channel))
                            .key(keys.held(app, &channel))
                            .key(keys.version(app, &channel))
                            .arg(&user_id)
                            .arg(held_field(node, &user_id))
                            .invoke_async(&mut conn),
                    )
                    .await?;
                    let field = member_field(app, &channel, &user_id);
                    index(link, &mut conn, &field, None).await?;
                    Ok(version)
                }
                .await;
                match result {
                    Ok(0) => {}
                    Ok(version) => handler.member_left(app, channel, user_id, version),
                    Err(e) => link.write_failed("recording a presence leave", &e),
                }
            }
        }
    }

    /// Makes Redis hold exactly this node's state: undoes what it no longer has, writes what
    /// is missing. Transitions it causes are announced like any other.
    async fn resync(&self, handler: &dyn PresenceHandler) {
        let link = &*self.link;
        let Some(mut conn) = link.connection() else {
            return;
        };
        let recorded: HashMap<String, String> = match call(
            redis::cmd("HGETALL")
                .arg(link.keys.node_state(&link.config.node_id))
                .query_async(&mut conn),
        )
        .await
        {
            Ok(recorded) => recorded,
            Err(e) => return link.write_failed("reading this node's state", &e),
        };
        let mut wanted: HashMap<String, (&str, StateChange)> = HashMap::new();
        for app in self.member_limits.keys() {
            for change in handler.snapshot(app) {
                let field = match &change {
                    StateChange::Subscriptions { channel, .. } => subscriptions_field(app, channel),
                    StateChange::Join {
                        channel, user_id, ..
                    } => member_field(app, channel, user_id),
                    StateChange::Leave { .. } => continue,
                };
                wanted.insert(field, (app.as_str(), change));
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
            self.apply(handler, app, change).await;
        }
        for (field, (app, change)) in wanted {
            let current = recorded.get(&field);
            let up_to_date = match &change {
                StateChange::Subscriptions { count, .. } => {
                    current.is_some_and(|c| *c == count.to_string())
                }
                _ => current.is_some(),
            };
            if !up_to_date {
                self.apply(handler, app, change).await;
            }
        }
    }
}

/// `{user, info JSON, …}` from the join script, sorted by user id.
/// Writes (`Some(value)`) or removes a field of this node's index, the hash that tells a
/// survivor which channels to clean up should this node die; listing the node too, since a
/// node reaped while alive writes before its next heartbeat and must be reapable again.
async fn index(
    link: &Link,
    conn: &mut Connection,
    field: &str,
    value: Option<usize>,
) -> std::result::Result<(), String> {
    let node = &link.config.node_id;
    let state = link.keys.node_state(node);
    match value {
        Some(value) => {
            call(
                redis::pipe()
                    .cmd("HSET")
                    .arg(&state)
                    .arg(field)
                    .arg(value)
                    .ignore()
                    .cmd("SADD")
                    .arg(link.keys.nodes())
                    .arg(node)
                    .ignore()
                    .query_async::<()>(conn),
            )
            .await
        }
        None => {
            call(
                redis::cmd("HDEL")
                    .arg(&state)
                    .arg(field)
                    .query_async::<()>(conn),
            )
            .await
        }
    }
}

/// Keeps the app's set of occupied channels in step with a channel's transition. The set has
/// its own slot, so this follows the channel's script rather than being part of it; removing
/// checks again afterwards, so a vacate racing another node's occupy cannot leave an occupied
/// channel out of the set.
pub(super) async fn record_occupancy(
    link: &Link,
    conn: &mut Connection,
    app: &str,
    channel: &str,
    occupied: bool,
) -> std::result::Result<(), String> {
    let set = link.keys.channels(app);
    if !occupied {
        call(
            redis::cmd("SREM")
                .arg(&set)
                .arg(channel)
                .query_async::<()>(conn),
        )
        .await?;
        let still: bool = call(
            redis::cmd("EXISTS")
                .arg(link.keys.subscriptions(app, channel))
                .query_async(conn),
        )
        .await?;
        if !still {
            return Ok(());
        }
    }
    call(
        redis::cmd("SADD")
            .arg(&set)
            .arg(channel)
            .query_async::<()>(conn),
    )
    .await
}

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
