//! A node's lease: renewed every third of its length while the node lives; once it runs out,
//! any survivor undoes the dead node's state (atomically and once, so exactly one node
//! announces what that changes). A graceful leave gives it up at once.

use std::sync::atomic::Ordering;

use redis::aio::MultiplexedConnection;

use super::link::{Link, call};
use crate::server::presence_store::PresenceHandler;

/// Renews the lease; `Ok(false)` when this process did not hold it any more (survivors may
/// have reaped this node, or a predecessor with the same id left state behind).
pub(super) async fn heartbeat(
    link: &Link,
    conn: &mut MultiplexedConnection,
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
    conn: &mut MultiplexedConnection,
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

/// Undoes one node's state when its lease is gone; false when the node is alive.
async fn reap_node(
    link: &Link,
    handler: &dyn PresenceHandler,
    conn: &mut MultiplexedConnection,
    node: &str,
) -> std::result::Result<bool, String> {
    let keys = &link.keys;
    let undone: Option<Vec<String>> = call(
        link.scripts
            .reap
            .key(keys.lease(node))
            .key(keys.node_state(node))
            .key(keys.nodes())
            .arg(keys.prefix())
            .arg(node)
            .invoke_async(conn),
    )
    .await?;
    let Some(undone) = undone else {
        return Ok(false);
    };
    if !undone.is_empty() && node != link.config.node_id {
        tracing::warn!(dead = %node, "realtime cluster: a node's lease ran out; its state is cleaned up");
    }
    let entries: Vec<&[String]> = undone.chunks(5).collect();
    // Members go before the channel they emptied, as when they leave one by one.
    for entry in entries.iter().filter(|e| e[0] == "r") {
        if let [_, app, channel, user, version] = entry {
            let version = version.parse().unwrap_or(u64::MAX);
            handler.member_left(app, channel.clone(), user.clone(), version);
        }
    }
    for entry in entries.iter().filter(|e| e[0] == "v") {
        if let [_, app, channel, _, _] = entry {
            handler.occupancy(app, channel.clone(), false);
        }
    }
    Ok(true)
}
