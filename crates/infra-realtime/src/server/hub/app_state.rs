//! What one app's hub holds under its lock, and how frames reach its sockets.
//!
//! Every frame is handed to a socket's bounded outbox while the lock is held, so a socket sees
//! `subscription_succeeded` before any event published after it, and events in order. A socket
//! whose outbox is full (in frames or bytes) is closed instead of buffered without bound.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};

use crate::server::cache_store::CACHE_TTL;
use crate::server::kill_switch::Kill;
use crate::server::outbox::Outbox;
use crate::server::peer_counts::PeerCounts;
use crate::server::presence_store::ChannelStats;
use crate::server::protocol::{CloseCode, frame};

/// How often expired cache entries are swept (reads check the age themselves meanwhile).
const CACHE_SWEEP: Duration = Duration::from_secs(60);

/// One connection as the hub sees it.
pub(super) struct Socket {
    pub outbox: Outbox,
    pub kill: Arc<Kill>,
    /// The client address its per-address limit counts, when the server knows it.
    pub peer: Option<IpAddr>,
    pub user: Option<String>,
    pub channels: HashSet<String>,
}

/// A member of a presence channel: one user, possibly on several sockets.
pub(super) struct Member {
    pub info: Value,
    pub sockets: usize,
}

/// A clustered presence join waiting for the store's member list.
pub(super) struct Joining {
    pub user_id: String,
    /// Member frames that reached this node meanwhile, with their versions: the list the
    /// store answers may be older than some of them, so they wait for it instead of being
    /// lost (the joiner is not a subscriber yet).
    pub member_events: Vec<(u64, Utf8Bytes)>,
}

/// This node's part of one channel.
#[derive(Default)]
pub(super) struct Channel {
    /// Socket id → the presence user it joined as.
    pub subscribers: HashMap<String, Option<String>>,
    /// Clustered presence joins waiting for the store's member list: socket id → the join.
    /// Their users count in `members` already, so a leave meanwhile cannot drop the user.
    pub joining: HashMap<String, Joining>,
    /// Clustered presence sockets: the member-list version their list was taken at.
    pub presence_versions: HashMap<String, u64>,
    pub members: HashMap<String, Member>,
}

impl Channel {
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.joining.is_empty()
    }

    /// Its counts, as this node holds them.
    pub fn stats(&self, name: &str) -> ChannelStats {
        ChannelStats {
            subscription_count: self.subscribers.len(),
            user_count: name.starts_with("presence-").then_some(self.members.len()),
        }
    }
}

/// One app's state on this node.
#[derive(Default)]
pub(super) struct AppState {
    pub sockets: HashMap<String, Socket>,
    pub channels: HashMap<String, Channel>,
    /// Signed-in user → its sockets.
    pub users: HashMap<String, HashSet<String>>,
    /// The last event of each `cache-` channel, and when it was published.
    pub cache: HashMap<String, (Utf8Bytes, Instant)>,
    /// When expired cache entries were last swept.
    pub cache_swept: Option<Instant>,
    /// Cache channels a subscriber was just sent `cache_miss` on, for the hub's `cache_miss`
    /// webhook once its change is done.
    pub cache_misses: Vec<String>,
    /// Clustered: a cache channel this node holds no event of is asked of the cluster's store
    /// before the subscriber hears `cache_miss`.
    pub ask_cluster_cache: bool,
    /// Subscriptions (socket id, channel) waiting for the cluster's answer, for the hub to ask.
    pub cache_lookups: Vec<(String, String)>,
    pub peers: PeerCounts,
}

impl AppState {
    /// Keeps `message` as the last event of a cache channel.
    pub fn keep_cached(&mut self, channel: &str, message: &Utf8Bytes) {
        let now = Instant::now();
        // Sweeping on every publish would cost every kept channel per event.
        if self
            .cache_swept
            .is_none_or(|swept| now.duration_since(swept) >= CACHE_SWEEP)
        {
            self.cache
                .retain(|_, (_, at)| now.duration_since(*at) < CACHE_TTL);
            self.cache_swept = Some(now);
        }
        self.cache
            .insert(channel.to_owned(), (message.clone(), now));
    }

    /// Sends `subscription_succeeded` with `data` to a socket of `channel`, and on cache
    /// channels the kept event or `cache_miss`.
    pub fn succeed(&mut self, socket_id: &str, channel: &str, data: &Value) {
        let Some(socket) = self.sockets.get(socket_id) else {
            return;
        };
        let succeeded = frame(
            "pusher_internal:subscription_succeeded",
            Some(channel),
            data,
        );
        deliver(socket, Utf8Bytes::from(succeeded));
        if is_cache_channel(channel) {
            match self.cache.get(channel) {
                Some((cached, at)) if at.elapsed() < CACHE_TTL => deliver(socket, cached.clone()),
                _ if self.ask_cluster_cache => self
                    .cache_lookups
                    .push((socket_id.to_owned(), channel.to_owned())),
                _ => self.cache_miss(socket_id, channel),
            }
        }
    }

    /// Sends `cache_miss` to a subscriber of a cache channel, and notes it for the webhook.
    pub fn cache_miss(&mut self, socket_id: &str, channel: &str) {
        if let Some(socket) = self.sockets.get(socket_id) {
            let miss = frame("pusher:cache_miss", Some(channel), &json!({}));
            deliver(socket, Utf8Bytes::from(miss));
            self.cache_misses.push(channel.to_owned());
        }
    }

    /// Whether this node holds a cache channel's last event (within the TTL).
    pub fn has_cached(&self, channel: &str) -> bool {
        self.cache
            .get(channel)
            .is_some_and(|(_, at)| at.elapsed() < CACHE_TTL)
    }

    /// Sends a frame to every subscriber of `channel` on this node but `except`.
    pub fn send_to_channel(&self, channel: &str, message: &Utf8Bytes, except: Option<&str>) {
        let Some(entry) = self.channels.get(channel) else {
            return;
        };
        for socket_id in entry.subscribers.keys() {
            if Some(socket_id.as_str()) == except {
                continue;
            }
            if let Some(socket) = self.sockets.get(socket_id) {
                deliver(socket, message.clone());
            }
        }
    }

    /// Drops one socket from a signed-in user's set, and the user with its last socket.
    /// True when that was the user's last socket.
    pub fn forget_user_socket(&mut self, user: &str, socket_id: &str) -> bool {
        if let Some(sockets) = self.users.get_mut(user) {
            sockets.remove(socket_id);
            if sockets.is_empty() {
                self.users.remove(user);
                return true;
            }
        }
        false
    }
}

/// `{"presence": {"ids", "hash", "count"}}` of `subscription_succeeded`, ids sorted.
pub(super) fn presence_data<'a>(members: impl Iterator<Item = (&'a String, &'a Value)>) -> Value {
    let hash: BTreeMap<&String, &Value> = members.collect();
    let ids: Vec<&&String> = hash.keys().collect();
    json!({"presence": {"ids": ids, "hash": hash, "count": ids.len()}})
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

/// Queues a frame for a socket; a full queue means the client stopped keeping up, so it is
/// closed instead of buffering without bound or slowing everyone else down.
pub(super) fn deliver(socket: &Socket, message: Utf8Bytes) {
    if socket.outbox.push(message).is_err() {
        socket.kill.trigger(CloseCode::SlowClient);
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
