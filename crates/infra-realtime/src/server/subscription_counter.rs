//! Pusher's "subscription count" app setting: the subscribers of a non-presence channel hear
//! `pusher_internal:subscription_count` `{"subscription_count": n}` as the channel's count over
//! the cluster changes, and the app's webhook hears `subscription_count`.
//!
//! The hub only marks a channel whose subscriptions changed on this node ([`CountChanges`]);
//! a task of the node's sends the count, at most once per channel every
//! [`ServerConfig::subscription_count_interval`](super::ServerConfig): the first change at once,
//! the changes within the interval after it as one count at its end, so a channel that many
//! join at once costs one frame per subscriber per interval, not one per join. The count is
//! the presence store's sum over the nodes on a cluster (this node's own count when the store
//! cannot answer), and goes to every node's subscribers over the bus.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::node::Node;

/// The event subscribers hear.
pub(crate) const SUBSCRIPTION_COUNT_EVENT: &str = "pusher_internal:subscription_count";

/// Channels whose subscriptions changed, waiting for the node's task: bounded by the number of
/// channels, however many changes there were.
pub(crate) struct CountChanges {
    interval: Duration,
    dirty: Mutex<HashSet<(String, String)>>,
    notify: Arc<Notify>,
    /// The node the task sends through, set once the node exists.
    node: OnceLock<Weak<Node>>,
    /// The task starts with the first change (in the runtime that made it).
    started: OnceLock<()>,
}

impl CountChanges {
    pub fn new(interval: Duration) -> Arc<Self> {
        Arc::new(CountChanges {
            interval,
            dirty: Mutex::default(),
            notify: Arc::default(),
            node: OnceLock::new(),
            started: OnceLock::new(),
        })
    }

    /// Sends the counts through `node`.
    pub fn bind(&self, node: Weak<Node>) {
        let _ = self.node.set(node);
    }

    /// Marks `channel` of `app_id` changed (called under the app's lock: never waits).
    pub fn changed(self: &Arc<Self>, app_id: &str, channel: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((app_id.to_owned(), channel.to_owned()));
        self.notify.notify_one();
        if let Some(node) = self.node.get()
            && self.started.set(()).is_ok()
        {
            tokio::spawn(run(self.clone(), node.clone(), self.interval));
        }
    }

    fn take(&self) -> HashSet<(String, String)> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Why a channel waits for its next turn.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Its subscriptions changed.
    Change,
    /// A count was sent one interval ago: asked again in case the store had not yet seen
    /// every node's change then (its log is written in the background), and sent if it differs.
    Recheck,
}

async fn run(changes: Arc<CountChanges>, node: Weak<Node>, interval: Duration) {
    type Key = (String, String);
    // Per channel: when it may be sent next, what waits for that time, and the count sent last.
    let mut next_allowed: HashMap<Key, Instant> = HashMap::new();
    let mut waiting: HashMap<Key, Due> = HashMap::new();
    let mut last_sent: HashMap<Key, usize> = HashMap::new();
    loop {
        let earliest = waiting
            .keys()
            .filter_map(|key| next_allowed.get(key))
            .min()
            .copied();
        let due = async {
            match earliest {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = changes.notify.notified() => {}
            () = due => {}
        }
        let now = Instant::now();
        for key in changes.take() {
            waiting.insert(key, Due::Change);
        }
        let ready: Vec<(Key, Due)> = waiting
            .iter()
            .filter(|(key, _)| next_allowed.get(*key).is_none_or(|at| *at <= now))
            .map(|(key, due)| (key.clone(), *due))
            .collect();
        let Some(node) = node.upgrade() else {
            return;
        };
        for (key, why) in ready {
            waiting.remove(&key);
            let Some(count) = node.subscription_count(&key.0, &key.1).await else {
                continue;
            };
            if last_sent.get(&key) != Some(&count) {
                node.send_subscription_count(&key.0, &key.1, count);
                last_sent.insert(key.clone(), count);
            }
            next_allowed.insert(key.clone(), now + interval);
            if why == Due::Change {
                waiting.entry(key).or_insert(Due::Recheck);
            }
        }
        // Channels quiet for a whole interval need no entry; empty ones no last count.
        next_allowed.retain(|key, at| *at > now || waiting.contains_key(key));
        last_sent.retain(|key, count| *count > 0 || waiting.contains_key(key));
    }
}

/// Whether a frame is a subscription count, which a cache channel must not keep as its last
/// event. Our own frames are serialized the same way every time, so the text tells.
pub(crate) fn is_count_frame(message: &str) -> bool {
    message.contains("\"event\":\"pusher_internal:subscription_count\"")
}
