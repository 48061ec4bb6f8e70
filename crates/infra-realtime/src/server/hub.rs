//! The server's state: per app, the sockets, the channels they joined, presence members and
//! signed-in users. Every change happens under the app's one lock, which is never held across
//! an `.await`; frames are handed to each socket's bounded queue while it is held, so a socket
//! sees `subscription_succeeded` before any event published after it, and events in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};

use super::app::{AppConfig, ServerConfig};
use super::cluster::ClusterAdapter;
pub(crate) use super::kill_switch::Kill;
use super::outbox::Outbox;
use super::peer_counts::{PeerCounts, peer_key};
use super::protocol::{CloseCode, frame};
use super::webhook::{WebhookEvent, WebhookQueue};

/// How long the last event of a `cache-` channel is kept for late subscribers.
const CACHE_TTL: Duration = Duration::from_secs(30 * 60);
/// How often expired cache entries are swept (reads check the age themselves meanwhile).
const CACHE_SWEEP: Duration = Duration::from_secs(60);

/// Channels whose subscribers are signed-in users, not authorized sockets.
pub(crate) const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

mod shared;

use shared::leave_check;

/// One connection as the hub sees it.
pub(crate) struct Socket {
    outbox: Outbox,
    kill: Arc<Kill>,
    /// The client address its per-address limit counts, when the server knows it.
    peer: Option<IpAddr>,
    user: Option<String>,
    channels: HashSet<String>,
}

/// A member of a presence channel: one user, possibly on several sockets.
struct Member {
    info: Value,
    sockets: usize,
}

/// A clustered presence join in flight.
struct Joining {
    user_id: String,
    /// Member frames that reached this node meanwhile, with their versions: the list the
    /// cluster answers may be older than some of them, so they wait for it instead of being
    /// lost (the joiner is not a subscriber yet).
    member_events: Vec<(u64, Utf8Bytes)>,
}

/// Member frames kept for one join in flight at most; beyond, the joiner is closed (as a
/// socket whose queue is full) and reconnects with a fresh list.
const MAX_BUFFERED_MEMBER_EVENTS: usize = 1024;

#[derive(Default)]
struct Channel {
    /// Socket id → the presence user it joined as.
    subscribers: HashMap<String, Option<String>>,
    /// Clustered presence joins waiting for the cluster's member list: socket id → the join.
    /// Their users count in `members` already, so a leave meanwhile cannot drop the user.
    joining: HashMap<String, Joining>,
    /// Clustered presence sockets: the member-list version their list was taken at.
    presence_versions: HashMap<String, u64>,
    members: HashMap<String, Member>,
}

impl Channel {
    fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.joining.is_empty()
    }
}

#[derive(Default)]
struct AppState {
    sockets: HashMap<String, Socket>,
    channels: HashMap<String, Channel>,
    users: HashMap<String, HashSet<String>>,
    cache: HashMap<String, (Utf8Bytes, Instant)>,
    /// When expired cache entries were last swept.
    cache_swept: Option<Instant>,
    peers: PeerCounts,
}

/// How many things the hub holds, to prove nothing stays behind after clients leave.
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

/// A presence identity: the user id (as a string) and its `user_info`.
#[derive(Debug)]
pub(crate) struct Presence {
    pub user_id: String,
    pub user_info: Value,
}

/// Why a subscription was refused: an HTTP-like status and a message.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub message: String,
}

/// What a channel query answers.
pub(crate) struct ChannelStats {
    pub subscription_count: usize,
    pub user_count: Option<usize>,
}

/// One app's hub.
pub(crate) struct AppHub {
    pub config: AppConfig,
    state: Mutex<AppState>,
    webhooks: Option<WebhookQueue>,
    cluster: Arc<dyn ClusterAdapter>,
}

impl AppHub {
    fn new(config: AppConfig, leave_delay: Duration, cluster: Arc<dyn ClusterAdapter>) -> Self {
        let webhooks = config.webhook_url.clone().map(|url| {
            let queue =
                WebhookQueue::new(url, config.key.clone(), config.secret.clone(), leave_delay);
            if cluster.is_shared() {
                queue.with_leave_check(leave_check(cluster.clone(), config.id.clone()))
            } else {
                queue
            }
        });
        AppHub {
            config,
            state: Mutex::new(AppState::default()),
            webhooks,
            cluster,
        }
    }

    fn lock(&self) -> MutexGuard<'_, AppState> {
        // A panic under the lock leaves maps that are still consistent enough to serve.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn webhook(&self, event: WebhookEvent) {
        if let Some(queue) = &self.webhooks {
            queue.push(event);
        }
    }

    /// Adds a socket unless the app is at its connection limit, or the socket's address at
    /// its own (`peer` is `None` when the server does not know the address).
    pub fn register(
        &self,
        socket_id: &str,
        outbox: Outbox,
        kill: Arc<Kill>,
        peer: Option<IpAddr>,
    ) -> Result<(), (CloseCode, String)> {
        let limits = &self.config.limits;
        let mut state = self.lock();
        if state.sockets.len() >= limits.max_connections {
            let message = format!(
                "Over capacity: the app has {} connections, its limit",
                limits.max_connections
            );
            return Err((CloseCode::OverCapacity, message));
        }
        let peer = peer.map(peer_key);
        if let Some(key) = peer
            && !state.peers.try_add(key, limits.max_connections_per_ip)
        {
            let message = format!(
                "Over capacity: {} connections from this address, its limit",
                limits.max_connections_per_ip
            );
            return Err((CloseCode::OverCapacity, message));
        }
        state.sockets.insert(
            socket_id.to_owned(),
            Socket {
                outbox,
                kill,
                peer,
                user: None,
                channels: HashSet::new(),
            },
        );
        Ok(())
    }

    /// Removes a socket and everything it held: subscriptions, presence, sign-in, its place
    /// in its address's count. Costs one step per channel it held, and nothing after.
    pub fn remove(&self, socket_id: &str) {
        let mut state = self.lock();
        let Some(socket) = state.sockets.remove(socket_id) else {
            return;
        };
        for channel in &socket.channels {
            self.leave(&mut state, socket_id, channel);
        }
        if let Some(user) = socket.user {
            forget_user_socket(&mut state, &user, socket_id);
        }
        if let Some(peer) = socket.peer {
            state.peers.remove(peer);
        }
    }

    /// Joins a socket to a channel and sends it `subscription_succeeded` (plus the cached
    /// event or `cache_miss` on cache channels); other members hear `member_added` when the
    /// user is new to the channel.
    pub fn subscribe(
        &self,
        socket_id: &str,
        channel: &str,
        presence: Option<Presence>,
    ) -> Result<(), Refusal> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(socket) = state.sockets.get_mut(socket_id) else {
            return Ok(());
        };
        if let Some(user) = channel.strip_prefix(USER_CHANNEL_PREFIX)
            && socket.user.as_deref() != Some(user)
        {
            return Err(Refusal {
                status: 403,
                message: "sign in as this user first".into(),
            });
        }
        let cap = self.config.limits.max_channels_per_connection;
        if socket.channels.len() >= cap && !socket.channels.contains(channel) {
            return Err(Refusal {
                status: 403,
                message: format!(
                    "this connection is subscribed to {cap} channels, the most it may hold; \
                     unsubscribe from one first"
                ),
            });
        }
        if self.cluster.is_shared() {
            self.subscribe_shared(state, socket_id, channel, presence);
            return Ok(());
        }
        let entry = state.channels.entry(channel.to_owned()).or_default();
        let newly_occupied = entry.subscribers.is_empty();
        let already = entry.subscribers.contains_key(socket_id);
        let mut added: Option<(String, Value)> = None;
        if let (Some(p), false) = (&presence, already) {
            let limits = &self.config.limits;
            let is_new_user = !entry.members.contains_key(&p.user_id);
            if is_new_user && entry.members.len() >= limits.max_presence_members {
                if newly_occupied {
                    state.channels.remove(channel);
                }
                return Err(Refusal {
                    status: 403,
                    message: format!(
                        "presence channel is full ({} members)",
                        limits.max_presence_members
                    ),
                });
            }
            let member = entry.members.entry(p.user_id.clone()).or_insert(Member {
                info: p.user_info.clone(),
                sockets: 0,
            });
            member.sockets += 1;
            if is_new_user {
                added = Some((p.user_id.clone(), p.user_info.clone()));
            }
        }
        if !already {
            entry.subscribers.insert(
                socket_id.to_owned(),
                presence.as_ref().map(|p| p.user_id.clone()),
            );
            socket.channels.insert(channel.to_owned());
        }
        let data = if presence.is_some() || channel.starts_with("presence-") {
            presence_data(entry.members.iter().map(|(id, m)| (id, &m.info)))
        } else {
            json!({})
        };
        succeed(&state.cache, socket, channel, &data);
        if let Some((user_id, user_info)) = added {
            let message = Utf8Bytes::from(frame(
                "pusher_internal:member_added",
                Some(channel),
                &json!({"user_id": user_id, "user_info": user_info}),
            ));
            send_to_channel(state, channel, &message, Some(socket_id));
            self.webhook(WebhookEvent::MemberAdded {
                channel: channel.to_owned(),
                user_id,
            });
        }
        if newly_occupied && !already {
            self.webhook(WebhookEvent::ChannelOccupied {
                channel: channel.to_owned(),
            });
        }
        Ok(())
    }

    /// Takes a socket off a channel.
    pub fn unsubscribe(&self, socket_id: &str, channel: &str) {
        let mut state = self.lock();
        let removed = state
            .sockets
            .get_mut(socket_id)
            .is_some_and(|s| s.channels.remove(channel));
        if removed {
            self.leave(&mut state, socket_id, channel);
        }
    }

    /// The channel side of leaving: presence bookkeeping, `member_removed` when the user's
    /// last socket leaves, forgetting the channel when it empties.
    fn leave(&self, state: &mut AppState, socket_id: &str, channel: &str) {
        if self.cluster.is_shared() {
            return self.leave_shared(state, socket_id, channel);
        }
        let Some(entry) = state.channels.get_mut(channel) else {
            return;
        };
        let Some(user) = entry.subscribers.remove(socket_id) else {
            return;
        };
        let mut removed_user = None;
        if let Some(user_id) = user
            && let Some(member) = entry.members.get_mut(&user_id)
        {
            member.sockets -= 1;
            if member.sockets == 0 {
                entry.members.remove(&user_id);
                removed_user = Some(user_id);
            }
        }
        let vacated = entry.subscribers.is_empty();
        if vacated {
            state.channels.remove(channel);
        }
        if let Some(user_id) = removed_user {
            let message = Utf8Bytes::from(frame(
                "pusher_internal:member_removed",
                Some(channel),
                &json!({"user_id": user_id}),
            ));
            send_to_channel(state, channel, &message, None);
            self.webhook(WebhookEvent::MemberRemoved {
                channel: channel.to_owned(),
                user_id,
            });
        }
        if vacated {
            self.webhook(WebhookEvent::ChannelVacated {
                channel: channel.to_owned(),
            });
        }
    }

    /// Delivers an event on a channel to every subscriber but `except`, on every node.
    pub fn publish(&self, channel: &str, event: &str, data: &str, except: Option<&str>) {
        let message = Utf8Bytes::from(frame(event, Some(channel), &Value::String(data.into())));
        self.publish_frame(channel, message, except);
    }

    /// Waits until the frames this node relayed so far reached the other nodes' bus.
    pub async fn flush_relays(&self) {
        if self.cluster.is_shared() {
            self.cluster.flush().await;
        }
    }

    /// Delivers a ready frame here, then hands it to the other nodes.
    pub fn publish_frame(&self, channel: &str, message: Utf8Bytes, except: Option<&str>) {
        self.deliver_here(channel, &message, except);
        if self.cluster.is_shared() {
            self.cluster
                .relay(&self.config.id, channel, &message, except);
        }
    }

    /// Delivers a frame to this node's subscribers of `channel` (and keeps it on cache
    /// channels); the path of both local publishes and frames relayed from other nodes.
    pub fn deliver_here(&self, channel: &str, message: &Utf8Bytes, except: Option<&str>) {
        let mut state = self.lock();
        if is_cache_channel(channel) {
            let now = Instant::now();
            // Sweeping on every publish would cost every kept channel per event.
            if state
                .cache_swept
                .is_none_or(|swept| now.duration_since(swept) >= CACHE_SWEEP)
            {
                state
                    .cache
                    .retain(|_, (_, at)| now.duration_since(*at) < CACHE_TTL);
                state.cache_swept = Some(now);
            }
            state
                .cache
                .insert(channel.to_owned(), (message.clone(), now));
        }
        send_to_channel(&state, channel, message, except);
    }

    /// A client event: relayed to the channel's other subscribers, with `user_id` on presence
    /// channels.
    pub fn client_event(
        &self,
        socket_id: &str,
        channel: &str,
        event: &str,
        data: &Value,
        user_id: Option<&str>,
    ) {
        let encoded = match data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut body = json!({"event": event, "channel": channel, "data": encoded});
        if let Some(user_id) = user_id {
            body["user_id"] = json!(user_id);
        }
        let message = Utf8Bytes::from(body.to_string());
        let state = self.lock();
        send_to_channel(&state, channel, &message, Some(socket_id));
        drop(state);
        if self.cluster.is_shared() {
            self.cluster
                .relay(&self.config.id, channel, &message, Some(socket_id));
        }
        self.webhook(WebhookEvent::ClientEvent {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data: encoded,
            socket_id: socket_id.to_owned(),
            user_id: user_id.map(str::to_owned),
        });
    }

    /// Sends a frame to one socket (replies such as `pusher:pong`).
    pub fn send_to_socket(&self, socket_id: &str, message: String) {
        let state = self.lock();
        if let Some(socket) = state.sockets.get(socket_id) {
            deliver(socket, Utf8Bytes::from(message));
        }
    }

    /// Records a socket's sign-in.
    pub fn sign_in(&self, socket_id: &str, user_id: &str) {
        let mut state = self.lock();
        let Some(socket) = state.sockets.get_mut(socket_id) else {
            return;
        };
        let previous = socket.user.replace(user_id.to_owned());
        if let Some(previous) = previous.filter(|previous| previous != user_id) {
            // The socket is another user now: it leaves the previous user's channel, so that
            // user's events and terminations no longer reach it.
            let user_channel = format!("{USER_CHANNEL_PREFIX}{previous}");
            if socket.channels.remove(&user_channel) {
                self.leave(&mut state, socket_id, &user_channel);
            }
            forget_user_socket(&mut state, &previous, socket_id);
        }
        state
            .users
            .entry(user_id.to_owned())
            .or_default()
            .insert(socket_id.to_owned());
    }

    /// Whether a socket joined a channel (client events need it).
    pub fn is_subscribed(&self, socket_id: &str, channel: &str) -> bool {
        self.lock()
            .sockets
            .get(socket_id)
            .is_some_and(|s| s.channels.contains(channel))
    }

    /// The presence user a socket joined `channel` as.
    pub fn presence_user(&self, socket_id: &str, channel: &str) -> Option<String> {
        self.lock()
            .channels
            .get(channel)
            .and_then(|c| c.subscribers.get(socket_id).cloned().flatten())
    }

    /// Closes every connection of a signed-in user (4009) on every node.
    pub fn terminate_user(&self, user_id: &str) {
        self.terminate_here(user_id);
        if self.cluster.is_shared() {
            self.cluster.relay_terminate(&self.config.id, user_id);
        }
    }

    /// Closes this node's connections of a signed-in user (4009); returns how many.
    pub fn terminate_here(&self, user_id: &str) -> usize {
        let state = self.lock();
        let Some(sockets) = state.users.get(user_id) else {
            return 0;
        };
        for id in sockets {
            if let Some(socket) = state.sockets.get(id) {
                socket.kill.trigger(CloseCode::Unauthorized);
            }
        }
        sockets.len()
    }

    /// Closes every connection with `code`.
    pub fn close_all(&self, code: CloseCode) {
        for socket in self.lock().sockets.values() {
            socket.kill.trigger(code);
        }
    }

    /// Occupied channels whose names start with `prefix`, with their counts.
    pub fn channels(&self, prefix: &str) -> BTreeMap<String, ChannelStats> {
        self.lock()
            .channels
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, c)| (name.clone(), stats(name, c)))
            .collect()
    }

    /// One channel's counts (`None` when unoccupied).
    pub fn channel(&self, name: &str) -> Option<ChannelStats> {
        self.lock().channels.get(name).map(|c| stats(name, c))
    }

    /// The user ids of a presence channel.
    pub fn users(&self, name: &str) -> Vec<String> {
        let state = self.lock();
        let mut ids: Vec<String> = state
            .channels
            .get(name)
            .map(|c| c.members.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Occupied channels over the cluster (this node's when it cannot answer).
    pub async fn query_channels(&self, prefix: &str) -> BTreeMap<String, ChannelStats> {
        match self.cluster.channels(&self.config.id, prefix).await {
            Some(found) => found,
            None => self.channels(prefix),
        }
    }

    /// One channel's counts over the cluster.
    pub async fn query_channel(&self, name: &str) -> Option<ChannelStats> {
        match self.cluster.channel(&self.config.id, name).await {
            Some(found) => found,
            None => self.channel(name),
        }
    }

    /// A presence channel's user ids over the cluster.
    pub async fn query_users(&self, name: &str) -> Vec<String> {
        match self.cluster.users(&self.config.id, name).await {
            Some(found) => found,
            None => self.users(name),
        }
    }

    /// What the app holds.
    pub fn counts(&self) -> StateCounts {
        let state = self.lock();
        let (webhooks_queued, webhooks_dropped) =
            self.webhooks.as_ref().map_or((0, 0), WebhookQueue::counts);
        StateCounts {
            sockets: state.sockets.len(),
            channels: state.channels.len(),
            members: state.channels.values().map(|c| c.members.len()).sum(),
            users: state.users.len(),
            webhooks_queued,
            webhooks_dropped,
            cluster_changes_queued: 0,
        }
    }
}

/// `{"presence": {"ids", "hash", "count"}}` of `subscription_succeeded`, ids sorted.
fn presence_data<'a>(members: impl Iterator<Item = (&'a String, &'a Value)>) -> Value {
    let hash: BTreeMap<&String, &Value> = members.collect();
    let ids: Vec<&&String> = hash.keys().collect();
    json!({"presence": {"ids": ids, "hash": hash, "count": ids.len()}})
}

/// Sends `subscription_succeeded` (and on cache channels the kept event or `cache_miss`).
fn succeed(
    cache: &HashMap<String, (Utf8Bytes, Instant)>,
    socket: &Socket,
    channel: &str,
    data: &Value,
) {
    let succeeded = frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        data,
    );
    deliver(socket, Utf8Bytes::from(succeeded));
    if is_cache_channel(channel) {
        let reply = match cache.get(channel) {
            Some((cached, at)) if at.elapsed() < CACHE_TTL => cached.clone(),
            _ => Utf8Bytes::from(frame("pusher:cache_miss", Some(channel), &json!({}))),
        };
        deliver(socket, reply);
    }
}

fn stats(name: &str, channel: &Channel) -> ChannelStats {
    ChannelStats {
        subscription_count: channel.subscribers.len(),
        user_count: name
            .starts_with("presence-")
            .then_some(channel.members.len()),
    }
}

/// Drops one socket from a signed-in user's set, and the user with its last socket.
fn forget_user_socket(state: &mut AppState, user: &str, socket_id: &str) {
    if let Some(sockets) = state.users.get_mut(user) {
        sockets.remove(socket_id);
        if sockets.is_empty() {
            state.users.remove(user);
        }
    }
}

/// `cache-…`, `private-cache-…`, `private-encrypted-cache-…`, `presence-cache-…`.
pub(crate) fn is_cache_channel(name: &str) -> bool {
    let rest = name
        .strip_prefix("private-encrypted-")
        .or_else(|| name.strip_prefix("private-"))
        .or_else(|| name.strip_prefix("presence-"))
        .unwrap_or(name);
    rest.starts_with("cache-")
}

/// Queues a frame for a socket; a full queue (in frames or bytes) means the client stopped
/// keeping up, so it is closed instead of buffering without bound or slowing everyone else
/// down.
fn deliver(socket: &Socket, message: Utf8Bytes) {
    if socket.outbox.push(message).is_err() {
        socket.kill.trigger(CloseCode::SlowClient);
    }
}

fn send_to_channel(state: &AppState, channel: &str, message: &Utf8Bytes, except: Option<&str>) {
    let Some(entry) = state.channels.get(channel) else {
        return;
    };
    for socket_id in entry.subscribers.keys() {
        if Some(socket_id.as_str()) == except {
            continue;
        }
        if let Some(socket) = state.sockets.get(socket_id) {
            deliver(socket, message.clone());
        }
    }
}

/// Every app of a server, by key and by id, and what the connections share.
pub(crate) struct Hub {
    apps: Vec<Arc<AppHub>>,
    by_key: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    pub activity_timeout: Duration,
    pub pong_timeout: Duration,
    pub write_timeout: Duration,
    next_socket: AtomicU64,
    cluster: Arc<dyn ClusterAdapter>,
}

impl Hub {
    pub fn new(config: ServerConfig, cluster: Arc<dyn ClusterAdapter>) -> Self {
        let apps: Vec<Arc<AppHub>> = config
            .apps
            .into_iter()
            .map(|app| Arc::new(AppHub::new(app, config.leave_delay, cluster.clone())))
            .collect();
        let by_key = apps
            .iter()
            .enumerate()
            .map(|(i, a)| (a.config.key.clone(), i))
            .collect();
        let by_id = apps
            .iter()
            .enumerate()
            .map(|(i, a)| (a.config.id.clone(), i))
            .collect();
        Hub {
            apps,
            by_key,
            by_id,
            activity_timeout: config.activity_timeout,
            pong_timeout: config.pong_timeout,
            write_timeout: config.write_timeout,
            next_socket: AtomicU64::new(1),
            cluster,
        }
    }

    pub fn cluster(&self) -> &Arc<dyn ClusterAdapter> {
        &self.cluster
    }

    pub fn apps(&self) -> &[Arc<AppHub>] {
        &self.apps
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<AppHub>> {
        self.by_key.get(key).map(|&i| &self.apps[i])
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<AppHub>> {
        self.by_id.get(id).map(|&i| &self.apps[i])
    }

    /// `random.sequence`: unique in this process, not guessable across restarts.
    pub fn new_socket_id(&self) -> String {
        let n = self.next_socket.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", rand::random::<u32>() % 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_channel_names() {
        for name in [
            "cache-a",
            "private-cache-a",
            "private-encrypted-cache-a",
            "presence-cache-a",
        ] {
            assert!(is_cache_channel(name), "{name}");
        }
        for name in ["a-cache-x", "private-a", "presence-x"] {
            assert!(!is_cache_channel(name), "{name}");
        }
    }
}
