//! Channel membership on a node of a cluster: the hub still delivers to its own sockets, while
//! the presence store decides what only all nodes together know (member lists, a channel's or
//! a user's first and last node). Every change of this node's part is written to the store's
//! log under the app's lock, so one channel's changes reach it in the order they were made.
//!
//! A presence join waits for the store's member list ([`complete_join`]); member frames that
//! reach the node meanwhile wait with it, ordered against the list by its version.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde_json::json;

use super::app_state::{AppState, Channel, Joining, Member, deliver, presence_data};
use crate::server::presence_store::{JoinOutcome, StateChange, StateLog};
use crate::server::protocol::{CloseCode, subscription_error};
use crate::server::subscription::Presence;

/// Member frames kept for one join in flight at most; beyond, the joiner is closed (as a
/// socket whose queue is full) and reconnects with a fresh list.
const MAX_BUFFERED_MEMBER_EVENTS: usize = 1024;

/// The log one app of a clustered node writes its changes to.
pub(super) struct AppLog {
    log: Arc<dyn StateLog>,
    app_id: String,
}

impl AppLog {
    pub fn new(log: Arc<dyn StateLog>, app_id: String) -> Self {
        AppLog { log, app_id }
    }

    fn record(&self, change: StateChange) -> bool {
        self.log.record(&self.app_id, change)
    }
}

/// A subscription: ordinary channels succeed at once; presence joins wait for the store's
/// member list ([`complete_join`]).
pub(super) fn subscribe(
    state: &mut AppState,
    socket_id: &str,
    channel: &str,
    presence: Option<Presence>,
    log: &AppLog,
) {
    let Some(socket) = state.sockets.get_mut(socket_id) else {
        return;
    };
    if !socket.channels.insert(channel.to_owned()) {
        // Already subscribed (or joining): the first answer stands.
        return;
    }
    let entry = state.channels.entry(channel.to_owned()).or_default();
    let joins = presence.is_some();
    let change = match presence {
        None => {
            entry.subscribers.insert(socket_id.to_owned(), None);
            let count = entry.subscribers.len();
            state.succeed(socket_id, channel, &json!({}));
            StateChange::Subscriptions {
                channel: channel.to_owned(),
                count,
            }
        }
        Some(p) => {
            entry.joining.insert(
                socket_id.to_owned(),
                Joining {
                    user_id: p.user_id.clone(),
                    member_events: Vec::new(),
                },
            );
            let member = entry.members.entry(p.user_id.clone()).or_insert(Member {
                info: p.user_info.clone(),
                sockets: 0,
            });
            member.sockets += 1;
            StateChange::Join {
                channel: channel.to_owned(),
                socket_id: Some(socket_id.to_owned()),
                user_id: p.user_id,
                user_info: p.user_info,
            }
        }
    };
    if !log.record(change) && joins {
        // The log is full: answered from this node's members, as when Redis is away; the
        // resync that follows writes the member.
        complete_join(state, socket_id, channel, JoinOutcome::Unavailable, log);
    }
}

/// The store's answer to a presence join of `socket_id`: `subscription_succeeded` with every
/// node's members, or the refusal. Nothing happens when the socket left meanwhile.
pub(super) fn complete_join(
    state: &mut AppState,
    socket_id: &str,
    channel: &str,
    outcome: JoinOutcome,
    log: &AppLog,
) {
    let Some(entry) = state.channels.get_mut(channel) else {
        return;
    };
    let Some(Joining {
        user_id,
        member_events,
    }) = entry.joining.remove(socket_id)
    else {
        return;
    };
    // Member frames the answered list does not include yet follow `subscription_succeeded`.
    let mut list_version = None;
    let data = match outcome {
        JoinOutcome::Full { limit } => {
            release_member(entry, channel, &user_id, log);
            if entry.is_empty() {
                state.channels.remove(channel);
            }
            if let Some(socket) = state.sockets.get_mut(socket_id) {
                socket.channels.remove(channel);
                let refusal = subscription_error(
                    channel,
                    403,
                    &format!("presence channel is full ({limit} members)"),
                );
                deliver(socket, Utf8Bytes::from(refusal));
            }
            return;
        }
        JoinOutcome::Joined { members, version } => {
            list_version = Some(version);
            entry
                .presence_versions
                .insert(socket_id.to_owned(), version);
            presence_data(members.iter().map(|(id, info)| (id, info)))
        }
        JoinOutcome::Unavailable => {
            presence_data(entry.members.iter().map(|(id, m)| (id, &m.info)))
        }
    };
    entry
        .subscribers
        .insert(socket_id.to_owned(), Some(user_id));
    let count = entry.subscribers.len();
    state.succeed(socket_id, channel, &data);
    if let Some(socket) = state.sockets.get(socket_id) {
        for (version, message) in member_events {
            if list_version.is_none_or(|listed| version > listed) {
                deliver(socket, message);
            }
        }
    }
    log.record(StateChange::Subscriptions {
        channel: channel.to_owned(),
        count,
    });
}

/// Gives back one socket's hold on a presence member; the node's last one tells the store the
/// user left here.
fn release_member(entry: &mut Channel, channel: &str, user_id: &str, log: &AppLog) {
    let Some(member) = entry.members.get_mut(user_id) else {
        return;
    };
    member.sockets -= 1;
    if member.sockets == 0 {
        entry.members.remove(user_id);
        log.record(StateChange::Leave {
            channel: channel.to_owned(),
            user_id: user_id.to_owned(),
        });
    }
}

/// The channel side of a socket leaving: the store announces departures.
pub(super) fn leave(state: &mut AppState, socket_id: &str, channel: &str, log: &AppLog) {
    let Some(entry) = state.channels.get_mut(channel) else {
        return;
    };
    let (user, subscribed) = if let Some(joining) = entry.joining.remove(socket_id) {
        (Some(joining.user_id), false)
    } else if let Some(user) = entry.subscribers.remove(socket_id) {
        entry.presence_versions.remove(socket_id);
        (user, true)
    } else {
        return;
    };
    if let Some(user_id) = user {
        release_member(entry, channel, &user_id, log);
    }
    if subscribed {
        log.record(StateChange::Subscriptions {
            channel: channel.to_owned(),
            count: entry.subscribers.len(),
        });
    }
    if entry.is_empty() {
        state.channels.remove(channel);
    }
}

/// Delivers a member frame to this node's subscribers whose member list does not already
/// include it (taken at `version` or later), and keeps it for the joins in flight.
pub(super) fn deliver_member_event(
    state: &mut AppState,
    channel: &str,
    message: &Utf8Bytes,
    except: Option<&str>,
    version: u64,
) {
    let Some(entry) = state.channels.get_mut(channel) else {
        return;
    };
    for (socket_id, joining) in &mut entry.joining {
        if Some(socket_id.as_str()) == except {
            continue;
        }
        if joining.member_events.len() >= MAX_BUFFERED_MEMBER_EVENTS {
            if let Some(socket) = state.sockets.get(socket_id) {
                socket.kill.trigger(CloseCode::SlowClient);
            }
            continue;
        }
        joining.member_events.push((version, message.clone()));
    }
    for socket_id in entry.subscribers.keys() {
        let seen = entry
            .presence_versions
            .get(socket_id)
            .is_some_and(|v| *v >= version);
        if seen || Some(socket_id.as_str()) == except {
            continue;
        }
        if let Some(socket) = state.sockets.get(socket_id) {
            deliver(socket, message.clone());
        }
    }
}

/// The store's member version of a channel is `version` now. It only goes back when Redis
/// lost the channel (a restart without persistence, or this node reaped while it was its only
/// member): lists taken at a later version then count as taken now, or their sockets would
/// skip every member frame until the version caught up again.
pub(super) fn cap_presence_versions(state: &mut AppState, channel: &str, version: u64) {
    if let Some(entry) = state.channels.get_mut(channel) {
        for taken in entry.presence_versions.values_mut() {
            *taken = (*taken).min(version);
        }
    }
}

/// This node's part of every channel, to write again after the store lost it.
pub(super) fn snapshot(state: &AppState) -> Vec<StateChange> {
    let mut changes = Vec::new();
    for (name, channel) in &state.channels {
        if !channel.subscribers.is_empty() {
            changes.push(StateChange::Subscriptions {
                channel: name.clone(),
                count: channel.subscribers.len(),
            });
        }
        for (user_id, member) in &channel.members {
            changes.push(StateChange::Join {
                channel: name.clone(),
                socket_id: None,
                user_id: user_id.clone(),
                user_info: member.info.clone(),
            });
        }
    }
    changes
}
