//! The cluster's shape: which masters serve which slots (`CLUSTER SLOTS`, what the client
//! routes by), and every node's role and state (`CLUSTER NODES`, for the health check).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use infra_core::{Error, Result};
use redis::Value;

/// Slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// One slot of each master, in the order of their first slot, from a `CLUSTER SLOTS` reply:
/// a command routed to it reaches that master (how `delete_prefix` walks them all).
pub(super) fn master_slots(reply: Value) -> Result<Vec<u16>> {
    let mut first_slot: BTreeMap<String, u16> = BTreeMap::new();
    let Value::Array(ranges) = reply else {
        return Err(Error::backend(
            "redis cluster: CLUSTER SLOTS answered no array",
        ));
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(start), Some(Value::Array(master))) = (fields.first(), fields.get(2)) else {
            continue;
        };
        let (Ok(start), Some(id)) = (redis::from_redis_value_ref::<u16>(start), master.get(2))
        else {
            continue;
        };
        let id = redis::from_redis_value_ref::<String>(id).unwrap_or_default();
        let slot = first_slot.entry(id).or_insert(start);
        *slot = (*slot).min(start);
    }
    let mut slots: Vec<u16> = first_slot.into_values().collect();
    slots.sort_unstable();
    Ok(slots)
}

/// One node, as `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) id: String,
    /// `host:port` as the cluster announces it.
    pub(super) address: String,
    pub(super) master: bool,
    /// The id of the master a replica replicates.
    pub(super) master_id: Option<String>,
    /// Flagged `fail`, `fail?`, `handshake` or `noaddr`, or its link is down.
    pub(super) failing: bool,
    /// Slot ranges served (inclusive), for a master.
    pub(super) slots: Vec<(u16, u16)>,
}

/// Parses `CLUSTER NODES`: one line per node, `<id> <ip:port@bus[,hostname]> <flags>
/// <master-id or -> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot ranges…>`;
/// slots being imported or migrated (`[…]`) are left out.
pub(super) fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let flags: Vec<&str> = fields[2].split(',').collect();
            let failing = flags
                .iter()
                .any(|f| matches!(*f, "fail" | "fail?" | "handshake" | "noaddr"))
                || fields[7] != "connected";
            let slots = fields[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .filter_map(|r| match r.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => r.parse().ok().map(|s| (s, s)),
                })
                .collect();
            Some(Node {
                id: fields[0].to_owned(),
                address: fields[1]
                    .split(['@', ','])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                master: flags.contains(&"master"),
                master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                failing,
                slots,
            })
        })
        .collect()
}

/// What the health check makes of the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Assessment {
    /// Slot ranges no reachable master serves: the cluster refuses keys in them.
    pub(super) missing: Vec<(u16, u16)>,
    /// Why the cluster works with a caveat: failed nodes, masters without a replica.
    pub(super) caveats: Vec<String>,
    /// Masters and their replicas, for the report.
    pub(super) summary: String,
}

/// Coverage, failures and a description of `nodes`.
pub(super) fn assess(nodes: &[Node]) -> Assessment {
    let mut served = vec![false; usize::from(SLOTS)];
    let mut masters: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.master && !n.slots.is_empty())
        .collect();
    masters.sort_by_key(|m| m.slots.first().map(|r| r.0));
    let mut caveats = Vec::new();
    for master in &masters {
        if master.failing {
            continue;
        }
        for &(start, end) in &master.slots {
            for slot in start..=end.min(SLOTS - 1) {
                served[usize::from(slot)] = true;
            }
        }
    }
    let replicas_of = |master: &Node| -> Vec<&Node> {
        nodes
            .iter()
            .filter(|n| !n.master && n.master_id.as_deref() == Some(master.id.as_str()))
            .collect()
    };
    let any_replicas = nodes.iter().any(|n| !n.master);
    let mut summary = String::new();
    for (i, master) in masters.iter().enumerate() {
        let replicas = replicas_of(master);
        let ranges: Vec<String> = master
            .slots
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        let _ = write!(
            summary,
            "{}master {} ({}{})",
            if i == 0 { "" } else { ", " },
            master.address,
            ranges.join(" "),
            if master.failing { ", FAILED" } else { "" }
        );
        for replica in &replicas {
            let _ = write!(
                summary,
                " + replica {}{}",
                replica.address,
                if replica.failing { " (FAILED)" } else { "" }
            );
        }
        if any_replicas && !replicas.iter().any(|r| !r.failing) {
            caveats.push(format!("master {} has no live replica", master.address));
        }
    }
    for node in nodes.iter().filter(|n| n.failing) {
        caveats.push(format!(
            "node {} ({}) is failing",
            node.address,
            if node.master { "master" } else { "replica" }
        ));
    }
    Assessment {
        missing: ranges(&served),
        caveats,
        summary,
    }
}

/// The runs of `false` in `served`, as inclusive slot ranges.
fn ranges(served: &[bool]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut start = None;
    for (slot, &ok) in served.iter().enumerate() {
        let slot = slot as u16;
        match (ok, start) {
            (false, None) => start = Some(slot),
            (true, Some(s)) => {
                out.push((s, slot - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, SLOTS - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTHY: &str = "\
27087b 127.0.0.1:7303@7403 master - 0 1 3 connected 10923-16383
a66745 127.0.0.1:7305@7405 slave bbdbdf 0 1 2 connected
0196bf 127.0.0.1:7301@7401,cache-1 myself,master - 0 1 1 connected 0-5460
bbdbdf 127.0.0.1:7302@7402 master - 0 1 2 connected 5461-10922
f98684 127.0.0.1:7306@7406 slave 27087b 0 1 3 connected
415abf 127.0.0.1:7304@7404 slave 0196bf 0 1 1 connected
";

    #[test]
    fn a_full_cluster_has_no_caveat_and_names_every_node() {
        let nodes = parse_nodes(HEALTHY);
        assert_eq!(nodes.len(), 6);
        let a = assess(&nodes);
        assert!(a.missing.is_empty() && a.caveats.is_empty(), "{a:?}");
        assert_eq!(
            a.summary,
            "master 127.0.0.1:7301 (0-5460) + replica 127.0.0.1:7304, \
             master 127.0.0.1:7302 (5461-10922) + replica 127.0.0.1:7305, \
             master 127.0.0.1:7303 (10923-16383) + replica 127.0.0.1:7306"
        );
    }

    #[test]
    fn a_failed_master_leaves_its_slots_missing_until_promotion() {
        let down = HEALTHY.replace(
            "bbdbdf 127.0.0.1:7302@7402 master - 0 1 2 connected",
            "bbdbdf 127.0.0.1:7302@7402 master,fail - 0 1 2 disconnected",
        );
        let a = assess(&parse_nodes(&down));
        assert_eq!(a.missing, vec![(5461, 10922)]);
        assert!(a.caveats.iter().any(|c| c.contains("7302")), "{a:?}");

        // Its replica promoted: every slot served again, the dead node still reported.
        let promoted = "\
27087b 127.0.0.1:7303@7403 master - 0 1 3 connected 10923-16383
a66745 127.0.0.1:7305@7405 master - 0 1 5 connected 5461-10922
0196bf 127.0.0.1:7301@7401 myself,master - 0 1 1 connected 0-5460
bbdbdf 127.0.0.1:7302@7402 master,fail - 0 1 2 disconnected
f98684 127.0.0.1:7306@7406 slave 27087b 0 1 3 connected
415abf 127.0.0.1:7304@7404 slave 0196bf 0 1 1 connected
";
        let a = assess(&parse_nodes(promoted));
        assert!(a.missing.is_empty(), "{a:?}");
        assert!(
            a.caveats
                .contains(&"master 127.0.0.1:7305 has no live replica".to_owned()),
            "{a:?}"
        );
        assert!(
            a.caveats
                .contains(&"node 127.0.0.1:7302 (master) is failing".to_owned())
        );
    }

    #[test]
    fn unassigned_slots_are_missing_and_migrations_are_ignored() {
        let text = "\
0196bf 127.0.0.1:7301@7401 myself,master - 0 1 1 connected 0-99 200 [300->-bbdbdf]
bbdbdf 127.0.0.1:7302@7402 master - 0 1 2 connected 201-16383
";
        let a = assess(&parse_nodes(text));
        assert_eq!(a.missing, vec![(100, 199)]);
        assert!(
            a.caveats.is_empty(),
            "no replicas at all is not a caveat: {a:?}"
        );
    }
}
