//! The hub: this node's local state, per app — the sockets, the channels they joined,
//! presence members and signed-in users (`app_hub`, `app_state`).
//!
//! Invariants: each app's state changes only under that app's one lock, never held across an
//! `.await`; frames reach sockets through their bounded outboxes while the lock is held, so a
//! socket sees its `subscription_succeeded` before any event published after it, and one
//! publisher's events in order. Channel membership is decided by the hub itself on a single
//! node (`local_presence`) and by the presence store on a clustered one (`shared_presence`),
//! to which the hub writes its changes under the same lock. The hub never reaches other nodes:
//! their frames come in through the [`BusHandler`] it implements.

mod app_hub;
mod app_state;
mod local_presence;
// Only a clustered node (`server-redis`) calls into it.
#[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
mod shared_presence;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;

pub(crate) use app_hub::{AppHub, CacheLookup, UserChanges};
pub(crate) use app_state::is_cache_channel;

use super::bus::BusHandler;

/// Every app of the node, by key and by id.
pub(crate) struct Hub {
    apps: Vec<Arc<AppHub>>,
    by_key: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    next_socket: AtomicU64,
}

impl Hub {
    pub fn new(apps: Vec<AppHub>) -> Self {
        let apps: Vec<Arc<AppHub>> = apps.into_iter().map(Arc::new).collect();
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
            next_socket: AtomicU64::new(1),
        }
    }

    /// The apps, in the order they were configured.
    pub fn apps(&self) -> &[Arc<AppHub>] {
        &self.apps
    }

    /// The app clients connect to with `key`.
    pub fn by_key(&self, key: &str) -> Option<&Arc<AppHub>> {
        self.by_key.get(key).map(|&i| &self.apps[i])
    }

    /// The app the HTTP API names `id`.
    pub fn by_id(&self, id: &str) -> Option<&Arc<AppHub>> {
        self.by_id.get(id).map(|&i| &self.apps[i])
    }

    /// `random.sequence`: unique in this process, not guessable across restarts.
    pub fn new_socket_id(&self) -> String {
        let n = self.next_socket.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", rand::random::<u32>() % 1_000_000_000)
    }
}

/// What other nodes published reaches this node's sockets; unknown apps are ignored.
impl BusHandler for Hub {
    fn deliver(&self, app_id: &str, channel: &str, message: &Utf8Bytes, except: Option<&str>) {
        if let Some(app) = self.by_id(app_id) {
            app.deliver(channel, message, except);
        }
    }

    fn deliver_member_event(
        &self,
        app_id: &str,
        channel: &str,
        message: &Utf8Bytes,
        except: Option<&str>,
        version: u64,
    ) {
        if let Some(app) = self.by_id(app_id) {
            app.deliver_member_event(channel, message, except, version);
        }
    }

    fn terminate_user(&self, app_id: &str, user_id: &str) {
        if let Some(app) = self.by_id(app_id) {
            app.terminate_user(user_id);
        }
    }
}
