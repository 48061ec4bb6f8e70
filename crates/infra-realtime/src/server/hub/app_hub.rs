//! One app's part of the node: its sockets, the channels they joined, presence members and
//! signed-in users, under one lock.
//!
//! Every change happens under the app's lock, which is never held across an `.await`, and every
//! frame is handed to a socket's bounded outbox while it is held. The hub knows nothing of other
//! nodes: on a clustered node its membership changes go to the presence store's log (under the
//! same lock, so in the order they were made) and the store's answers come back through
//! [`AppHub::complete_join`] and the other clustered calls below; what other nodes publish
//! arrives through [`AppHub::deliver`].

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};

use super::app_state::{AppState, Socket, deliver, is_cache_channel};
use super::local_presence;
use super::shared_presence::{self, AppLog};
use crate::server::app_config::AppConfig;
use crate::server::kill_switch::Kill;
use crate::server::outbox::Outbox;
use crate::server::peer_counts::peer_key;
use crate::server::presence_store::{ChannelStats, JoinOutcome, StateChange, StateLog};
use crate::server::protocol::{CloseCode, USER_CHANNEL_PREFIX};
use crate::server::server_metrics::ServerMetrics;
use crate::server::state_counts::StateCounts;
use crate::server::subscription::{Presence, Refusal};
use crate::server::subscription_counter::{CountChanges, is_count_frame};
use crate::server::watchlist::{UserChange, WATCHLIST_ROUTE_PREFIX};
use crate::server::webhook_event::WebhookEvent;
use crate::server::webhook_queue::WebhookQueue;

/// One app's hub.
pub(crate) struct AppHub {
    pub config: AppConfig,
    state: Mutex<AppState>,
    webhooks: Option<WebhookQueue>,
    /// Where membership changes go on a clustered node; `None`: this node decides them.
    log: Option<AppLog>,
    /// Where changed subscription counts go when the app has Pusher's subscription count
    /// setting on.
    count_changes: Option<Arc<CountChanges>>,
    /// Clustered: asks the cluster's cache store for a cache channel's last event (socket id,
    /// channel), answering through [`AppHub::finish_cache_lookup`].
    cache_lookup: OnceLock<CacheLookup>,
    /// With watchlist events on: where signed-in users' first and last sockets are reported.
    user_changes: OnceLock<UserChanges>,
    /// The fan-out histogram's handle (and the server's others, sharing their series).
    metrics: ServerMetrics,
}

/// Where a hub with watchlist events on reports its users' comings and goings.
pub(crate) type UserChanges = Arc<dyn Fn(UserChange) + Send + Sync>;

/// How a clustered hub asks for a cache channel's last event.
pub(crate) type CacheLookup = Arc<dyn Fn(String, String) + Send + Sync>;

impl AppHub {
    /// An app sending `webhooks` (when it has a webhook URL); `log` is the presence store's on
    /// a clustered node.
    pub fn new(
        config: AppConfig,
        webhooks: Option<WebhookQueue>,
        log: Option<Arc<dyn StateLog>>,
        count_changes: Option<Arc<CountChanges>>,
    ) -> Self {
        let log = log.map(|log| AppLog::new(log, config.id.clone()));
        let state = AppState {
            ask_cluster_cache: log.is_some(),
            ..AppState::default()
        };
        AppHub {
            config,
            state: Mutex::new(state),
            webhooks,
            log,
            count_changes,
            cache_lookup: OnceLock::new(),
            user_changes: OnceLock::new(),
            metrics: ServerMetrics::new(),
        }
    }

    /// Reports signed-in users' first and last sockets, and watchlists, to `changes`.
    pub fn set_user_changes(&self, changes: UserChanges) {
        let _ = self.user_changes.set(changes);
    }

    fn user_change(&self, change: impl FnOnce(String) -> UserChange) {
        if let Some(report) = self.user_changes.get() {
            report(change(self.config.id.clone()));
        }
    }

    fn user_online(&self, user_id: &str) {
        self.user_change(|app_id| UserChange::Online {
            app_id,
            user_id: user_id.to_owned(),
        });
    }

    fn user_offline(&self, user_id: &str) {
        self.user_change(|app_id| UserChange::Offline {
            app_id,
            user_id: user_id.to_owned(),
        });
    }

    /// Clustered: how to ask the cluster for a cache channel's last event.
    pub fn set_cache_lookup(&self, lookup: CacheLookup) {
        let _ = self.cache_lookup.set(lookup);
    }

    /// Clustered: the cluster's answer for a subscription that found no event on this node.
    /// An event that arrived here meanwhile reached the subscriber live, and stands.
    pub fn finish_cache_lookup(&self, socket_id: &str, channel: &str, found: Option<Utf8Bytes>) {
        let mut state = self.lock();
        let subscribed = state
            .sockets
            .get(socket_id)
            .is_some_and(|socket| socket.channels.contains(channel));
        if !subscribed || state.has_cached(channel) {
            return;
        }
        match found {
            Some(message) => {
                if let Some(socket) = state.sockets.get(socket_id) {
                    deliver(socket, message.clone());
                }
                state.keep_cached(channel, &message);
            }
            None => state.cache_miss(socket_id, channel),
        }
        self.cache_miss_webhooks(&mut state);
    }

    /// Marks a non-presence channel's subscription count changed, for the node to send (not
    /// the server's own `#…` channels, such as a signed-in user's).
    fn count_changed(&self, channel: &str) {
        if let Some(changes) = &self.count_changes
            && !channel.starts_with("presence-")
            && !channel.starts_with('#')
        {
            changes.changed(&self.config.id, channel);
        }
    }

    fn lock(&self) -> MutexGuard<'_, AppState> {
        // A panic under the lock leaves maps that are still consistent enough to serve.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a webhook event (dropped when the app has no webhook URL).
    pub fn webhook(&self, event: WebhookEvent) {
        if let Some(queue) = &self.webhooks
            && self.config.webhook_filter.allows(&event)
        {
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
        if let Some(user) = socket.user
            && state.forget_user_socket(&user, socket_id)
        {
            self.user_offline(&user);
        }
        if let Some(peer) = socket.peer {
            state.peers.remove(peer);
        }
    }

    /// Joins a socket to a channel and sends it `subscription_succeeded` (plus the cached
    /// event or `cache_miss` on cache channels) — on a clustered node, for a presence channel,
    /// once the store has answered. A user channel takes only its signed-in user; a socket
    /// holding `max_channels_per_connection` channels takes no other.
    pub fn subscribe(
        &self,
        socket_id: &str,
        channel: &str,
        presence: Option<Presence>,
    ) -> Result<(), Refusal> {
        let mut state = self.lock();
        let Some(socket) = state.sockets.get(socket_id) else {
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
        let result = match &self.log {
            Some(log) => {
                shared_presence::subscribe(&mut state, socket_id, channel, presence, log);
                Ok(())
            }
            None => local_presence::subscribe(
                &mut state,
                socket_id,
                channel,
                presence,
                self.config.limits.max_presence_members,
                &|event| self.webhook(event),
            ),
        };
        self.cache_miss_webhooks(&mut state);
        if result.is_ok() {
            self.count_changed(channel);
        }
        result
    }

    /// The `cache_miss` webhooks of the subscriptions that just succeeded without a cached
    /// event.
    fn cache_miss_webhooks(&self, state: &mut AppState) {
        for channel in std::mem::take(&mut state.cache_misses) {
            self.webhook(WebhookEvent::CacheMiss { channel });
        }
        for (socket_id, channel) in std::mem::take(&mut state.cache_lookups) {
            match self.cache_lookup.get() {
                Some(lookup) => lookup(socket_id, channel),
                None => state.cache_miss(&socket_id, &channel),
            }
        }
        for channel in std::mem::take(&mut state.cache_misses) {
            self.webhook(WebhookEvent::CacheMiss { channel });
        }
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

    /// The channel side of a socket leaving (its own side is the caller's).
    fn leave(&self, state: &mut AppState, socket_id: &str, channel: &str) {
        match &self.log {
            Some(log) => shared_presence::leave(state, socket_id, channel, log),
            None => local_presence::leave(state, socket_id, channel, &|event| self.webhook(event)),
        }
        self.count_changed(channel);
    }

    /// Delivers a frame to this node's subscribers of `channel` but `except`, and keeps it on
    /// cache channels: the path of this node's publishes and of frames other nodes published.
    pub fn deliver(&self, channel: &str, message: &Utf8Bytes, except: Option<&str>) {
        let started = std::time::Instant::now();
        let mut state = self.lock();
        if let Some(watcher) = channel.strip_prefix(WATCHLIST_ROUTE_PREFIX) {
            for socket_id in state.users.get(watcher).into_iter().flatten() {
                if let Some(socket) = state.sockets.get(socket_id) {
                    deliver(socket, message.clone());
                }
            }
            return;
        }
        if is_cache_channel(channel) && !is_count_frame(message) {
            state.keep_cached(channel, message);
        }
        state.send_to_channel(channel, message, except);
        drop(state);
        self.metrics.fanned_out(started.elapsed());
    }

    /// A client event: delivered to the channel's other subscribers on this node, with
    /// `user_id` on presence channels, and sent to the webhook. Returns the frame, for the
    /// other nodes.
    pub fn client_event(
        &self,
        socket_id: &str,
        channel: &str,
        event: &str,
        data: &Value,
        user_id: Option<&str>,
    ) -> Utf8Bytes {
        let encoded = match data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut body = json!({"event": event, "channel": channel, "data": encoded});
        if let Some(user_id) = user_id {
            body["user_id"] = json!(user_id);
        }
        let message = Utf8Bytes::from(body.to_string());
        self.lock()
            .send_to_channel(channel, &message, Some(socket_id));
        self.webhook(WebhookEvent::ClientEvent {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data: encoded,
            socket_id: socket_id.to_owned(),
            user_id: user_id.map(str::to_owned),
        });
        message
    }

    /// Sends a frame to one socket (replies such as `pusher:pong`).
    pub fn send_to_socket(&self, socket_id: &str, message: String) {
        let state = self.lock();
        if let Some(socket) = state.sockets.get(socket_id) {
            deliver(socket, Utf8Bytes::from(message));
        }
    }

    /// Records a socket's sign-in; a socket signed in as another user before leaves that
    /// user's channel, so its events and terminations no longer reach it.
    /// With watchlist events on, a user's first socket here makes it online, its last one
    /// gone offline, and a `watchlist` is reported for its current state.
    pub fn sign_in(&self, socket_id: &str, user_id: &str, watchlist: Vec<String>) {
        let mut state = self.lock();
        let Some(socket) = state.sockets.get_mut(socket_id) else {
            return;
        };
        let previous = socket.user.replace(user_id.to_owned());
        if let Some(previous) = previous.filter(|previous| previous != user_id) {
            let user_channel = format!("{USER_CHANNEL_PREFIX}{previous}");
            if socket.channels.remove(&user_channel) {
                self.leave(&mut state, socket_id, &user_channel);
            }
            if state.forget_user_socket(&previous, socket_id) {
                self.user_offline(&previous);
            }
        }
        let sockets = state.users.entry(user_id.to_owned()).or_default();
        let first = sockets.is_empty();
        sockets.insert(socket_id.to_owned());
        if first {
            self.user_online(user_id);
        }
        if !watchlist.is_empty() {
            self.user_change(|app_id| UserChange::Watching {
                app_id,
                socket_id: socket_id.to_owned(),
                user_id: user_id.to_owned(),
                watchlist,
            });
        }
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

    /// Closes this node's connections of a signed-in user (4009); returns how many.
    pub fn terminate_user(&self, user_id: &str) -> usize {
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

    /// This node's occupied channels whose names start with `prefix`, with their counts.
    pub fn channels(&self, prefix: &str) -> BTreeMap<String, ChannelStats> {
        self.lock()
            .channels
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, c)| (name.clone(), c.stats(name)))
            .collect()
    }

    /// One channel's counts on this node (`None` when unoccupied here).
    pub fn channel(&self, name: &str) -> Option<ChannelStats> {
        self.lock().channels.get(name).map(|c| c.stats(name))
    }

    /// The user ids of a presence channel on this node, sorted.
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

    /// What the app holds on this node, and its webhooks waiting or dropped.
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

/// What a clustered node's presence store and bus bring in (`server-redis`).
#[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
impl AppHub {
    /// Clustered: the store's answer to a presence join of `socket_id`.
    pub fn complete_join(&self, socket_id: &str, channel: &str, outcome: JoinOutcome) {
        if let Some(log) = &self.log {
            let mut state = self.lock();
            shared_presence::complete_join(&mut state, socket_id, channel, outcome, log);
            self.cache_miss_webhooks(&mut state);
        }
    }

    /// Clustered: delivers a `member_added` / `member_removed` frame of member-list `version`
    /// to this node's subscribers whose list does not include it yet.
    pub fn deliver_member_event(
        &self,
        channel: &str,
        message: &Utf8Bytes,
        except: Option<&str>,
        version: u64,
    ) {
        shared_presence::deliver_member_event(&mut self.lock(), channel, message, except, version);
    }

    /// Clustered: the store's member-list version of `channel` is `version` now.
    pub fn cap_presence_versions(&self, channel: &str, version: u64) {
        shared_presence::cap_presence_versions(&mut self.lock(), channel, version);
    }

    /// Clustered: this node's part of every channel, to write again after the store lost it.
    pub fn snapshot(&self) -> Vec<StateChange> {
        shared_presence::snapshot(&self.lock())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::server::outbox::{OutboxReceiver, outbox};
    use crate::server::protocol::frame;

    /// The log of a clustered node whose store the test plays by hand; it refuses every
    /// change while `full`.
    #[derive(Default)]
    struct HandLog {
        full: AtomicBool,
    }

    impl StateLog for HandLog {
        fn record(&self, _: &str, _: StateChange) -> bool {
            !self.full.load(Ordering::Relaxed)
        }
        fn pending(&self) -> usize {
            0
        }
    }

    fn clustered(full: bool) -> AppHub {
        let log = HandLog::default();
        log.full.store(full, Ordering::Relaxed);
        AppHub::new(
            AppConfig::new("1", "key", "secret"),
            None,
            Some(Arc::new(log)),
            None,
        )
    }

    fn member_frame(event: &str, user: &str) -> Utf8Bytes {
        Utf8Bytes::from(frame(event, Some("presence-x"), &json!({"user_id": user})))
    }

    fn received(rx: &mut OutboxReceiver) -> Vec<String> {
        let mut events = Vec::new();
        while let Some(message) = rx.try_recv() {
            let value: Value = serde_json::from_str(message.as_str()).unwrap();
            let event = value["event"].as_str().unwrap().to_owned();
            let user = serde_json::from_str::<Value>(value["data"].as_str().unwrap_or("{}"))
                .ok()
                .and_then(|d| d["user_id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            events.push(format!("{event} {user}"));
        }
        events
    }

    fn me() -> Presence {
        Presence {
            user_id: "me".into(),
            user_info: Value::Null,
        }
    }

    #[test]
    fn member_events_reaching_a_join_in_flight_follow_its_list() {
        let app = clustered(false);
        let (tx, mut rx) = outbox(64, 1 << 20);
        app.register("1.1", tx, Arc::default(), None).unwrap();
        app.subscribe("1.1", "presence-x", Some(me())).ok().unwrap();
        // While the join script runs, other nodes announce changes, some before the list
        // Redis answers with (version 3), some after it.
        let added = "pusher_internal:member_added";
        let removed = "pusher_internal:member_removed";
        app.deliver_member_event("presence-x", &member_frame(added, "old"), None, 2);
        app.deliver_member_event("presence-x", &member_frame(added, "new"), None, 4);
        app.deliver_member_event("presence-x", &member_frame(removed, "b"), None, 5);
        app.deliver_member_event("presence-x", &member_frame(added, "x"), Some("1.1"), 6);
        assert_eq!(
            received(&mut rx),
            Vec::<String>::new(),
            "not subscribed yet"
        );
        let members = vec![
            ("b".to_owned(), Value::Null),
            ("me".to_owned(), Value::Null),
            ("old".to_owned(), Value::Null),
        ];
        app.complete_join(
            "1.1",
            "presence-x",
            JoinOutcome::Joined {
                members,
                version: 3,
            },
        );
        assert_eq!(
            received(&mut rx),
            vec![
                "pusher_internal:subscription_succeeded ".to_owned(),
                format!("{added} new"),
                format!("{removed} b"),
            ]
        );
    }

    #[test]
    fn a_join_the_store_cannot_queue_is_answered_from_this_node() {
        let app = clustered(true);
        let (tx, mut rx) = outbox(64, 1 << 20);
        app.register("1.1", tx, Arc::default(), None).unwrap();
        app.subscribe("1.1", "presence-x", Some(me())).ok().unwrap();
        assert_eq!(
            received(&mut rx),
            vec!["pusher_internal:subscription_succeeded ".to_owned()]
        );
        assert_eq!(app.users("presence-x"), vec!["me".to_owned()]);
        assert_eq!(app.channel("presence-x").unwrap().subscription_count, 1);
    }
}
