//! Watchlist events: a user signed in with `pusher:signin` whose `user_data` has a `watchlist`
//! (up to 100 user ids) hears `pusher_internal:watchlist_events` — pusher-js's
//! `pusher.user.watchlist` emits each as `online` / `offline` with its `user_ids` — when a
//! watched user's first connection opens and its last one closes, over the whole cluster (once
//! per user, however many tabs), and the watched users online when it signs in.
//!
//! The hub reports a user's first and last connection on this node and each sign-in
//! ([`UserChange`]); the node's task ([`run`]) asks the [`WatchlistStore`] (this node's memory
//! alone, or Redis on a cluster) whether that made the user online or offline for the whole
//! cluster, and tells the watchers: their sockets on every node, through the bus, under the
//! route [`WATCHLIST_ROUTE_PREFIX`]`{watcher}` that the hub delivers to a signed-in user's
//! sockets.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, Weak};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::node::Node;

/// The event watchers hear.
pub(crate) const WATCHLIST_EVENT: &str = "pusher_internal:watchlist_events";
/// The bus route of a watcher's sockets: not a channel name a client can subscribe to (`#` is
/// reserved for the server's own).
pub(crate) const WATCHLIST_ROUTE_PREFIX: &str = "#watchlist-";
/// Pusher's limit on a watchlist.
pub(crate) const MAX_WATCHLIST: usize = 100;
/// User changes waiting for the node's task; beyond, they are dropped and logged.
pub(crate) const QUEUE: usize = 10_000;

/// What the hub tells the node about signed-in users.
#[derive(Debug)]
pub(crate) enum UserChange {
    /// The user's first socket on this node signed in.
    Online { app_id: String, user_id: String },
    /// The user's last socket on this node closed or signed in as someone else.
    Offline { app_id: String, user_id: String },
    /// A socket signed in with a watchlist.
    Watching {
        app_id: String,
        socket_id: String,
        user_id: String,
        watchlist: Vec<String>,
    },
}

/// The `watchlist` of a sign-in's `user_data`: none when absent; an error naming the field
/// when it is not a list of at most [`MAX_WATCHLIST`] strings.
pub(crate) fn watchlist_of(user_data: &str) -> Result<Vec<String>, String> {
    let data: Value = serde_json::from_str(user_data).map_err(|e| e.to_string())?;
    let Some(list) = data.get("watchlist") else {
        return Ok(Vec::new());
    };
    let ids: Vec<String> = list
        .as_array()
        .ok_or("`user_data.watchlist` must be a list of user ids")?
        .iter()
        .map(|id| id.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or("`user_data.watchlist` must hold only string user ids")?;
    if ids.len() > MAX_WATCHLIST {
        return Err(format!(
            "`user_data.watchlist` holds {} ids, more than the {MAX_WATCHLIST} allowed",
            ids.len()
        ));
    }
    let mut seen = HashSet::new();
    Ok(ids
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect())
}

/// A `pusher_internal:watchlist_events` frame.
pub(crate) fn watchlist_frame(events: &[(&str, &[String])]) -> String {
    let events: Vec<Value> = events
        .iter()
        .map(|(name, ids)| json!({"name": name, "user_ids": ids}))
        .collect();
    json!({"event": WATCHLIST_EVENT, "data": {"events": events}}).to_string()
}

/// Who is online over the cluster, and who watches whom.
#[async_trait]
pub(crate) trait WatchlistStore: Send + Sync {
    /// One more node holds the user: true when it was online on none before.
    async fn came_online(&self, app_id: &str, user_id: &str) -> bool;
    /// One node fewer holds the user: true when it is online on none now.
    async fn went_offline(&self, app_id: &str, user_id: &str) -> bool;
    /// Records that `watcher` watches `watched`.
    async fn watch(&self, app_id: &str, watcher: &str, watched: &[String]);
    /// Who watches `user_id`.
    async fn watchers(&self, app_id: &str, user_id: &str) -> Vec<String>;
    /// Which of `users` are online.
    async fn online(&self, app_id: &str, users: &[String]) -> Vec<String>;
}

/// A single node's store: its own memory.
#[derive(Default)]
pub(crate) struct LocalWatchlist {
    online: Mutex<HashSet<(String, String)>>,
    watchers: Mutex<HashMap<(String, String), HashSet<String>>>,
}

#[async_trait]
impl WatchlistStore for LocalWatchlist {
    async fn came_online(&self, app_id: &str, user_id: &str) -> bool {
        lock(&self.online).insert((app_id.to_owned(), user_id.to_owned()))
    }

    async fn went_offline(&self, app_id: &str, user_id: &str) -> bool {
        lock(&self.online).remove(&(app_id.to_owned(), user_id.to_owned()))
    }

    async fn watch(&self, app_id: &str, watcher: &str, watched: &[String]) {
        let mut watchers = lock(&self.watchers);
        for user in watched {
            watchers
                .entry((app_id.to_owned(), user.clone()))
                .or_default()
                .insert(watcher.to_owned());
        }
    }

    async fn watchers(&self, app_id: &str, user_id: &str) -> Vec<String> {
        lock(&self.watchers)
            .get(&(app_id.to_owned(), user_id.to_owned()))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    async fn online(&self, app_id: &str, users: &[String]) -> Vec<String> {
        let online = lock(&self.online);
        users
            .iter()
            .filter(|user| online.contains(&(app_id.to_owned(), (*user).clone())))
            .cloned()
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node's task: one change at a time, in the order the hubs made them.
pub(crate) async fn run(mut rx: mpsc::Receiver<UserChange>, node: Weak<Node>) {
    while let Some(change) = rx.recv().await {
        let Some(node) = node.upgrade() else {
            return;
        };
        let store = node.watchlist_store();
        match change {
            UserChange::Online { app_id, user_id } => {
                if store.came_online(&app_id, &user_id).await {
                    notify(&node, &app_id, &user_id, "online").await;
                }
            }
            UserChange::Offline { app_id, user_id } => {
                if store.went_offline(&app_id, &user_id).await {
                    notify(&node, &app_id, &user_id, "offline").await;
                }
            }
            UserChange::Watching {
                app_id,
                socket_id,
                user_id,
                watchlist,
            } => {
                store.watch(&app_id, &user_id, &watchlist).await;
                let online = store.online(&app_id, &watchlist).await;
                if !online.is_empty()
                    && let Some(app) = node.hub().by_id(&app_id)
                {
                    app.send_to_socket(&socket_id, watchlist_frame(&[("online", &online)]));
                }
            }
        }
    }
}

/// Tells every watcher of `user_id`, on every node, that it went `name` (online / offline).
async fn notify(node: &Node, app_id: &str, user_id: &str, name: &str) {
    let watchers = node.watchlist_store().watchers(app_id, user_id).await;
    let Some(app) = node.hub().by_id(app_id) else {
        return;
    };
    let message = watchlist_frame(&[(name, &[user_id.to_owned()])]);
    for watcher in watchers {
        node.route(app, &format!("{WATCHLIST_ROUTE_PREFIX}{watcher}"), &message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchlists_are_checked() {
        assert_eq!(watchlist_of(r#"{"id":"a"}"#).unwrap(), Vec::<String>::new());
        assert_eq!(
            watchlist_of(r#"{"id":"a","watchlist":["b","c","b"]}"#).unwrap(),
            ["b", "c"]
        );
        assert!(
            watchlist_of(r#"{"id":"a","watchlist":"b"}"#)
                .unwrap_err()
                .contains("watchlist")
        );
        let long: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let data = json!({"id": "a", "watchlist": long}).to_string();
        assert!(watchlist_of(&data).unwrap_err().contains("100"));
    }
}
