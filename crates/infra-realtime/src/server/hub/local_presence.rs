//! Channel membership on a node that is the whole cluster: the hub's own state is the truth,
//! so it decides every transition itself, at once, under the app's lock (a channel's first and
//! last subscriber, a presence user's first and last socket) and announces it.

use axum::extract::ws::Utf8Bytes;
use serde_json::json;

use super::app_state::{AppState, Member, presence_data};
use crate::server::protocol::{member_added, member_removed};
use crate::server::subscription::{Presence, Refusal};
use crate::server::webhook_event::WebhookEvent;

/// Joins a registered socket to `channel` and sends it `subscription_succeeded` (plus the cached
/// event or `cache_miss` on cache channels); other members hear `member_added` when the user is
/// new to the channel. A presence channel with `max_members` users refuses a new one.
pub(super) fn subscribe(
    state: &mut AppState,
    socket_id: &str,
    channel: &str,
    presence: Option<Presence>,
    max_members: usize,
    webhook: &dyn Fn(WebhookEvent),
) -> Result<(), Refusal> {
    let entry = state.channels.entry(channel.to_owned()).or_default();
    let newly_occupied = entry.subscribers.is_empty();
    let already = entry.subscribers.contains_key(socket_id);
    let mut added = None;
    if let (Some(p), false) = (&presence, already) {
        let is_new_user = !entry.members.contains_key(&p.user_id);
        if is_new_user && entry.members.len() >= max_members {
            if newly_occupied {
                state.channels.remove(channel);
            }
            return Err(Refusal {
                status: 403,
                message: format!("presence channel is full ({max_members} members)"),
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
        if let Some(socket) = state.sockets.get_mut(socket_id) {
            socket.channels.insert(channel.to_owned());
        }
    }
    let data = if presence.is_some() || channel.starts_with("presence-") {
        presence_data(entry.members.iter().map(|(id, m)| (id, &m.info)))
    } else {
        json!({})
    };
    state.succeed(socket_id, channel, &data);
    if let Some((user_id, user_info)) = added {
        let message = Utf8Bytes::from(member_added(channel, &user_id, &user_info));
        state.send_to_channel(channel, &message, Some(socket_id));
        webhook(WebhookEvent::MemberAdded {
            channel: channel.to_owned(),
            user_id,
        });
    }
    if newly_occupied && !already {
        webhook(WebhookEvent::ChannelOccupied {
            channel: channel.to_owned(),
        });
    }
    Ok(())
}

/// The channel side of a socket leaving: `member_removed` when the user's last socket leaves,
/// the channel forgotten when it empties.
pub(super) fn leave(
    state: &mut AppState,
    socket_id: &str,
    channel: &str,
    webhook: &dyn Fn(WebhookEvent),
) {
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
        let message = Utf8Bytes::from(member_removed(channel, &user_id));
        state.send_to_channel(channel, &message, None);
        webhook(WebhookEvent::MemberRemoved {
            channel: channel.to_owned(),
            user_id,
        });
    }
    if vacated {
        webhook(WebhookEvent::ChannelVacated {
            channel: channel.to_owned(),
        });
    }
}
