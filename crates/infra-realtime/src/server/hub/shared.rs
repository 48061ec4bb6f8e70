//! The clustered side of an app's hub: the hub still delivers to its own sockets, while the
//! cluster decides what only all nodes together know (member lists, first and last of a
//! channel or user).

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde_json::json;

use super::{
    AppHub, AppState, Channel, Joining, MAX_BUFFERED_MEMBER_EVENTS, Member, Presence, deliver,
    presence_data, succeed,
};
use crate::server::cluster::{ClusterAdapter, JoinOutcome, StateChange};
use crate::server::protocol::{CloseCode, subscription_error};
use crate::server::webhook::{StillLeft, WebhookEvent};

// `complete_join` and `snapshot` are called by the Redis adapter only.
#[cfg_attr(not(feature = "server-redis"), allow(dead_code))]
impl AppHub {
    /// A subscription on a node that shares its channels: ordinary channels succeed at once;
    /// presence joins wait for the cluster's member list (`complete_join`).
    pub(super) fn subscribe_shared(
        &self,
        state: &mut AppState,
        socket_id: &str,
        channel: &str,
        presence: Option<Presence>,
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
                if let Some(socket) = state.sockets.get(socket_id) {
                    succeed(&state.cache, socket, channel, &json!({}));
                }
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
        if !self.cluster.record(&self.config.id, change) && joins {
            // The cluster's queue is full: answered from this node's members, as when Redis
            // is away; the resync that follows writes the member.
            self.complete_join_in(state, socket_id, channel, JoinOutcome::Unavailable);
        }
    }

    /// The cluster's answer to a presence join of `socket_id`: `subscription_succeeded` with
    /// every node's members, or the refusal. Nothing happens when the socket left meanwhile.
    pub fn complete_join(&self, socket_id: &str, channel: &str, outcome: JoinOutcome) {
        let mut guard = self.lock();
        self.complete_join_in(&mut guard, socket_id, channel, outcome);
    }

    pub(super) fn complete_join_in(
        &self,
        state: &mut AppState,
        socket_id: &str,
        channel: &str,
        outcome: JoinOutcome,
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
                self.release_member(entry, channel, &user_id);
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
        if let Some(socket) = state.sockets.get(socket_id) {
            succeed(&state.cache, socket, channel, &data);
            for (version, message) in member_events {
                if list_version.is_none_or(|listed| version > listed) {
                    deliver(socket, message);
                }
            }
        }
        self.cluster.record(
            &self.config.id,
            StateChange::Subscriptions {
                channel: channel.to_owned(),
                count,
            },
        );
    }

    /// Gives back one socket's hold on a presence member; the node's last one tells the
    /// cluster the user left here.
    fn release_member(&self, entry: &mut Channel, channel: &str, user_id: &str) {
        let Some(member) = entry.members.get_mut(user_id) else {
            return;
        };
        member.sockets -= 1;
        if member.sockets == 0 {
            entry.members.remove(user_id);
            self.cluster.record(
                &self.config.id,
                StateChange::Leave {
                    channel: channel.to_owned(),
                    user_id: user_id.to_owned(),
                },
            );
        }
    }

    /// Leaving on a node that shares its channels: the cluster announces departures.
    pub(super) fn leave_shared(&self, state: &mut AppState, socket_id: &str, channel: &str) {
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
            self.release_member(entry, channel, &user_id);
        }
        if subscribed {
            self.cluster.record(
                &self.config.id,
                StateChange::Subscriptions {
                    channel: channel.to_owned(),
                    count: entry.subscribers.len(),
                },
            );
        }
        if entry.is_empty() {
            state.channels.remove(channel);
        }
    }

    /// Delivers a `member_added` / `member_removed` frame of presence `version` on every node.
    pub fn publish_member_event(
        &self,
        channel: &str,
        message: Utf8Bytes,
        except: Option<&str>,
        version: u64,
    ) {
        self.deliver_member_event_here(channel, &message, except, version);
        self.cluster
            .relay_member_event(&self.config.id, channel, &message, except, version);
    }

    /// Delivers a member frame to this node's subscribers whose member list does not already
    /// include it (taken at `version` or later), and keeps it for the joins in flight.
    pub fn deliver_member_event_here(
        &self,
        channel: &str,
        message: &Utf8Bytes,
        except: Option<&str>,
        version: u64,
    ) {
        let mut guard = self.lock();
        let state = &mut *guard;
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

    /// The cluster's member version of `channel` is `version` now. It only goes back when
    /// Redis lost the channel (a restart without persistence, or this node reaped while it
    /// was its only member): lists taken at a later version then count as taken now, or
    /// their sockets would skip every member frame until the version caught up again.
    pub fn cap_presence_versions(&self, channel: &str, version: u64) {
        let mut state = self.lock();
        if let Some(entry) = state.channels.get_mut(channel) {
            for taken in entry.presence_versions.values_mut() {
                *taken = (*taken).min(version);
            }
        }
    }

    /// This node's part of every channel, to write again after the cluster lost it (a
    /// reconnect, or a lease that ran out while Redis was away).
    pub fn snapshot(&self) -> Vec<StateChange> {
        let state = self.lock();
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
}

/// Asks the cluster whether a delayed leave webhook still holds: a return within the delay
/// may have landed on another node, whose arrival webhook went out already.
pub(super) fn leave_check(cluster: Arc<dyn ClusterAdapter>, app_id: String) -> StillLeft {
    Arc::new(move |event| {
        let cluster = cluster.clone();
        let app_id = app_id.clone();
        Box::pin(async move {
            match event {
                WebhookEvent::ChannelVacated { channel } => {
                    !matches!(cluster.channel(&app_id, &channel).await, Some(Some(_)))
                }
                WebhookEvent::MemberRemoved { channel, user_id } => !cluster
                    .users(&app_id, &channel)
                    .await
                    .is_some_and(|users| users.contains(&user_id)),
                _ => true,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::Value;

    use super::super::{ChannelStats, Hub};
    use super::*;
    use crate::server::app::AppConfig;
    use crate::server::outbox::{OutboxReceiver, outbox};
    use crate::server::protocol::frame;

    /// A node of a cluster whose answers the test gives by hand; its queue refuses every
    /// change when `full`.
    struct Clustered {
        full: bool,
    }

    #[async_trait::async_trait]
    impl ClusterAdapter for Clustered {
        fn is_shared(&self) -> bool {
            true
        }
        fn start(&self, _: std::sync::Weak<Hub>) -> infra_core::Result<()> {
            Ok(())
        }
        async fn ready(&self, _: Duration) -> bool {
            true
        }
        fn relay(&self, _: &str, _: &str, _: &Utf8Bytes, _: Option<&str>) {}
        async fn flush(&self) {}
        async fn leave(&self) {}
        fn relay_member_event(&self, _: &str, _: &str, _: &Utf8Bytes, _: Option<&str>, _: u64) {}
        fn relay_terminate(&self, _: &str, _: &str) {}
        fn record(&self, _: &str, _: StateChange) -> bool {
            !self.full
        }
        async fn channels(&self, _: &str, _: &str) -> Option<BTreeMap<String, ChannelStats>> {
            None
        }
        async fn channel(&self, _: &str, _: &str) -> Option<Option<ChannelStats>> {
            None
        }
        async fn users(&self, _: &str, _: &str) -> Option<Vec<String>> {
            None
        }
        fn health(&self) -> crate::server::cluster::ClusterHealth {
            crate::server::cluster::ClusterHealth {
                healthy: true,
                detail: String::new(),
            }
        }
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

    #[test]
    fn member_events_reaching_a_join_in_flight_follow_its_list() {
        let app = AppHub::new(
            AppConfig::new("1", "key", "secret"),
            Duration::ZERO,
            Arc::new(Clustered { full: false }),
        );
        let (tx, mut rx) = outbox(64, 1 << 20);
        app.register("1.1", tx, Arc::default(), None).unwrap();
        let presence = Presence {
            user_id: "me".into(),
            user_info: Value::Null,
        };
        app.subscribe("1.1", "presence-x", Some(presence))
            .ok()
            .unwrap();
        // While the join script runs, other nodes announce changes, some before the list
        // Redis answers with (version 3), some after it.
        let added = "pusher_internal:member_added";
        let removed = "pusher_internal:member_removed";
        app.deliver_member_event_here("presence-x", &member_frame(added, "old"), None, 2);
        app.deliver_member_event_here("presence-x", &member_frame(added, "new"), None, 4);
        app.deliver_member_event_here("presence-x", &member_frame(removed, "b"), None, 5);
        app.deliver_member_event_here("presence-x", &member_frame(added, "x"), Some("1.1"), 6);
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
    fn a_join_the_cluster_cannot_queue_is_answered_from_this_node() {
        let app = AppHub::new(
            AppConfig::new("1", "key", "secret"),
            Duration::ZERO,
            Arc::new(Clustered { full: true }),
        );
        let (tx, mut rx) = outbox(64, 1 << 20);
        app.register("1.1", tx, Arc::default(), None).unwrap();
        let presence = Presence {
            user_id: "me".into(),
            user_info: Value::Null,
        };
        app.subscribe("1.1", "presence-x", Some(presence))
            .ok()
            .unwrap();
        assert_eq!(
            received(&mut rx),
            vec!["pusher_internal:subscription_succeeded ".to_owned()]
        );
        assert_eq!(app.users("presence-x"), vec!["me".to_owned()]);
        assert_eq!(app.channel("presence-x").unwrap().subscription_count, 1);
    }
}
