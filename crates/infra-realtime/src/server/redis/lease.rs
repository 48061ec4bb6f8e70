//! A node's lease: renewed every third of its length while the node lives; once it runs out,
//! any survivor undoes the dead node's state, channel by channel, each channel's part once, so
//! exactly one node announces what that changes. A graceful leave gives it up at once.

use std::sync::atomic::Ordering;

use super::keys::{Field, held_field, parse_field};
use super::link::{Connection, Link, call};
use super::presence::record_occupancy;
use crate::server::presence_store::PresenceHandler;

/// Renews the lease; `Ok(false)` when this process did not hold it any more (survivors may
/// have reaped this node, or a predecessor with the same id left state behind).
pub(super) async fn heartbeat(
    link: &Link,
    conn: &mut Connection,
) -> std::result::Result<bool, String> {
    let node = &link.config.node_id;
    let lease_ms = u64::try_from(link.config.lease.as_millis()).unwrap_or(u64::MAX);
    let _lease = link.lease_guard.lock().await;
    if link.leaving.load(Ordering::SeqCst) {
        return Ok(true);
    }
    let held: i64 = call(
        link.scripts
            .heartbeat
            .key(link.keys.lease(node))
            .key(link.keys.nodes())
            .arg(node)
            .arg(lease_ms)
            .arg(&link.token)
            .invoke_async(conn),
    )
    .await?;
    if held == -1 {
        tracing::warn!(node = %node,
            "realtime cluster: another process held this node id's lease (a predecessor, or \
             two live nodes share INFRA_REALTIME_NODE_ID)");
    }
    Ok(held == 1)
}

/// Undoes the state of every node whose lease is gone, announcing what that changes, and
/// counts the live ones.
pub(super) async fn reap(
    link: &Link,
    handler: &dyn PresenceHandler,
    conn: &mut Connection,
) -> std::result::Result<(), String> {
    let nodes: Vec<String> = call(
        redis::cmd("SMEMBERS")
            .arg(link.keys.nodes())
            .query_async(conn),
    )
    .await?;
    let mut live = 0;
    for node in &nodes {
        if *node == link.config.node_id || !reap_node(link, handler, conn, node).await? {
            live += 1;
        }
    }
    link.live_nodes.store(live, Ordering::Relaxed);
    Ok(())
}

/// Gives up the lease, then undoes this node's state with the same script survivors use on a
/// dead node, announcing what that changes. No heartbeat takes the lease again afterwards.
pub(super) async fn give_up(link: &Link, handler: &dyn PresenceHandler) {
    link.leaving.store(true, Ordering::SeqCst);
    let _lease = link.lease_guard.lock().await;
    let Some(mut conn) = link.connection() else {
        return;
    };
    let node = &link.config.node_id;
    let dropped: std::result::Result<(), String> = call(
        redis::cmd("DEL")
            .arg(link.keys.lease(node))
            .query_async(&mut conn),
    )
    .await;
    if let Err(e) = dropped {
        return link.failed("giving up the lease", &e);
    }
    if let Err(e) = reap_node(link, handler, &mut conn, node).await {
        link.failed("removing this node's state", &e);
    }
    tracing::info!(node = %node, "realtime cluster: left the cluster");
}

/// Undoes the part of `node` in every channel its index names, when its lease is gone, each
/// step a script in that channel's slot; `Ok(false)` when the node is alive. Two survivors
/// reaping the same node see each transition once: the scripts undo a part only once.
async fn reap_node(
    link: &Link,
    handler: &dyn PresenceHandler,
    conn: &mut Connection,
    node: &str,
) -> std::result::Result<bool, String> {
    let keys = &link.keys;
    let index: Vec<String> = call(
        link.scripts
            .reap_start
            .key(keys.lease(node))
            .key(keys.node_state(node))
            .key(keys.reaping(node))
            .invoke_async(conn),
    )
    .await?;
    let Some((alive, fields)) = index.split_first() else {
        return Ok(false);
    };
    if alive == "0" {
        return Ok(false);
    }
    let fields: Vec<&String> = fields.iter().step_by(2).collect();
    if !fields.is_empty() && node != link.config.node_id {
        tracing::warn!(dead = %node, "realtime cluster: a node's lease ran out; its state is cleaned up");
    }
    let mut vacated = Vec::new();
    for field in &fields {
        match parse_field(field) {
            Some(Field::Subscriptions { app, channel }) => {
                let change: i64 = call(
                    link.scripts
                        .subscriptions
                        .key(keys.subscriptions(app, channel))
                        .arg(node)
                        .arg(0)
                        .invoke_async(conn),
                )
                .await?;
                if change == -1 {
                    record_occupancy(link, conn, app, channel, false).await?;
                    vacated.push((app.to_owned(), channel.to_owned()));
                }
            }
            Some(Field::Member {
                app,
                channel,
                user_id,
            }) => {
                let version: u64 = call(
                    link.scripts
                        .leave
                        .key(keys.members(app, channel))
                        .key(keys.infos(app, channel))
                        .key(keys.held(app, channel))
                        .key(keys.version(app, channel))
                        .arg(user_id)
                        .arg(held_field(node, user_id))
                        .invoke_async(conn),
                )
                .await?;
                if version > 0 {
                    handler.member_left(app, channel.to_owned(), user_id.to_owned(), version);
                }
            }
            None => {}
        }
    }
    // Members left before the channels they were in were vacated, as before.
    for (app, channel) in vacated {
        handler.occupancy(&app, channel, false);
    }
    // A node that comes back meanwhile writes a fresh index (its lease gone, it resyncs from
    // an empty one), which this leaves alone.
    let mut end = link.scripts.reap_end.prepare_invoke();
    end.key(keys.reaping(node))
        .key(keys.node_state(node))
        .key(keys.nodes())
        .arg(node);
    for field in &fields {
        end.arg(field.as_str());
    }
    call(end.invoke_async::<i64>(conn)).await?;
    Ok(true)
}
