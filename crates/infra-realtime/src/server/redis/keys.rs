//! Where the cluster keeps its state in Redis: the key layout and the node-hash fields.
//!
//! Layout under the prefix `p` (app `a`, channel `c`, node `n`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `p:bus` | pub/sub channel | events and terminations relayed between nodes (one server) |
//! | `p:bus:0` … `p:bus:15` | sharded pub/sub channels | the same on Redis Cluster |
//! | `{p}:nodes` | set | node ids that may hold state |
//! | `{p}:lease:n` | string with TTL | the node's lease; gone = the node is dead |
//! | `{p}:node:n` | hash | what the node holds: `s␟a␟c` → subscriptions, `p␟a␟c␟user` → 1 |
//! | `{p}:reaping:n` | hash | a dead node's fields taken out of its hash, until undone |
//! | `p:app:a:channels` | set | occupied channels |
//! | `p:ch:{a:c}:subs` | hash | node → its subscriptions to `c` |
//! | `p:ch:{a:c}:held` | hash | `n␟user` → 1 for each presence user a node holds |
//! | `p:ch:{a:c}:members` | hash | user → how many nodes hold it |
//! | `p:ch:{a:c}:info` | hash | user → its `user_info` JSON |
//! | `p:ch:{a:c}:version` | counter | bumped by every member added or removed |
//! | `p:ch:{a:c}:cache` | string with TTL | a cache channel's last event (30 minutes) |
//! | `p:app:a:online` | hash | signed-in user → how many nodes hold it (watchlist events) |
//! | `p:app:a:watchers:u` | set | users whose watchlist holds `u` |
//!
//! The braces are Redis Cluster's hash tags: a channel's keys share one slot, so the scripts
//! that decide its transitions (first/last subscriber, first/last node of a user) stay atomic
//! on a cluster while different channels spread over the masters; the membership keys share
//! the prefix's slot, so a heartbeat is one script too. On one server the tags change nothing.
//! A node's hash is an index of the channels it wrote to, so a survivor can undo a dead node's
//! part channel by channel, each step a script in that channel's slot.
//!
//! The version orders a channel's member list against the `member_added` / `member_removed`
//! frames in flight: a socket whose list already reflects a change is not told it again.

/// Separates the parts of a node-hash field; channel names and app ids cannot hold it.
pub(super) const SEP: char = '\u{1f}';

/// Sharded bus channels on Redis Cluster: enough that they land on every master of a usual
/// cluster, few enough that every node subscribing to all of them costs nothing.
pub(super) const BUS_SHARDS: u64 = 16;

/// Key names under one prefix.
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }
    pub fn bus(&self) -> String {
        format!("{}:bus", self.prefix)
    }
    /// The sharded bus channel `shard` (below [`BUS_SHARDS`]).
    pub fn bus_shard(&self, shard: u64) -> String {
        format!("{}:bus:{shard}", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{{{}}}:nodes", self.prefix)
    }
    pub fn lease(&self, node: &str) -> String {
        format!("{{{}}}:lease:{node}", self.prefix)
    }
    pub fn node_state(&self, node: &str) -> String {
        format!("{{{}}}:node:{node}", self.prefix)
    }
    pub fn reaping(&self, node: &str) -> String {
        format!("{{{}}}:reaping:{node}", self.prefix)
    }
    pub fn channels(&self, app: &str) -> String {
        format!("{}:app:{app}:channels", self.prefix)
    }
    pub fn subscriptions(&self, app: &str, channel: &str) -> String {
        format!("{}:ch:{{{app}:{channel}}}:subs", self.prefix)
    }
    pub fn held(&self, app: &str, channel: &str) -> String {
        format!("{}:ch:{{{app}:{channel}}}:held", self.prefix)
    }
    pub fn members(&self, app: &str, channel: &str) -> String {
        format!("{}:ch:{{{app}:{channel}}}:members", self.prefix)
    }
    pub fn infos(&self, app: &str, channel: &str) -> String {
        format!("{}:ch:{{{app}:{channel}}}:info", self.prefix)
    }
    pub fn version(&self, app: &str, channel: &str) -> String {
        format!("{}:ch:{{{app}:{channel}}}:version", self.prefix)
    }
    pub fn cached_event(&self, app: &str, channel: &str) -> String {
        format!("{}:ch:{{{app}:{channel}}}:cache", self.prefix)
    }
    pub fn online_users(&self, app: &str) -> String {
        format!("{}:app:{app}:online", self.prefix)
    }
    pub fn watchers(&self, app: &str, user_id: &str) -> String {
        format!("{}:app:{app}:watchers:{user_id}", self.prefix)
    }
}

/// The field of a channel's `held` hash for a user a node holds.
pub(super) fn held_field(node: &str, user_id: &str) -> String {
    format!("{node}{SEP}{user_id}")
}

/// Which sharded bus channel carries the frames of `name` (a channel or a user id), so one
/// channel's frames keep their order.
pub(super) fn bus_shard_of(app: &str, name: &str) -> u64 {
    // FNV-1a: stable, cheap, and only this process needs to agree with itself.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in app.bytes().chain([0]).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % BUS_SHARDS
}

/// The node-hash field of a node's subscriptions to a channel.
pub(super) fn subscriptions_field(app: &str, channel: &str) -> String {
    format!("s{SEP}{app}{SEP}{channel}")
}

/// The node-hash field of a presence user the node holds.
pub(super) fn member_field(app: &str, channel: &str, user_id: &str) -> String {
    format!("p{SEP}{app}{SEP}{channel}{SEP}{user_id}")
}

/// What a node-hash field stands for.
pub(super) enum Field<'a> {
    Subscriptions {
        app: &'a str,
        channel: &'a str,
    },
    Member {
        app: &'a str,
        channel: &'a str,
        user_id: &'a str,
    },
}

pub(super) fn parse_field(field: &str) -> Option<Field<'_>> {
    let (kind, rest) = field.split_once(SEP)?;
    let (app, rest) = rest.split_once(SEP)?;
    match kind {
        "s" => Some(Field::Subscriptions { app, channel: rest }),
        "p" => {
            let (channel, user_id) = rest.split_once(SEP)?;
            Some(Field::Member {
                app,
                channel,
                user_id,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis Cluster's slot of a key: CRC16 of its hash tag, or of the whole key.
    fn slot(key: &str) -> u16 {
        let tagged = key
            .find('{')
            .and_then(|open| {
                let rest = &key[open + 1..];
                rest.find('}')
                    .filter(|&close| close > 0)
                    .map(|close| &rest[..close])
            })
            .unwrap_or(key);
        let mut crc: u16 = 0;
        for byte in tagged.bytes() {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn every_script_names_keys_of_one_slot() {
        let keys = Keys::new("infra-realtime");
        for (app, channel) in [("1", "presence-room"), ("2", "#server-to-user-u}1")] {
            let channel_keys = [
                keys.subscriptions(app, channel),
                keys.held(app, channel),
                keys.members(app, channel),
                keys.infos(app, channel),
                keys.version(app, channel),
            ];
            let first = slot(&channel_keys[0]);
            assert!(
                channel_keys.iter().all(|k| slot(k) == first),
                "{channel_keys:?}"
            );
        }
        let membership = [
            keys.nodes(),
            keys.lease("n1"),
            keys.node_state("n2"),
            keys.reaping("n3"),
        ];
        let first = slot(&membership[0]);
        assert!(membership.iter().all(|k| slot(k) == first));
        // Channels spread: a hundred of them do not share one slot.
        let slots: std::collections::HashSet<u16> = (0..100)
            .map(|i| slot(&keys.subscriptions("1", &format!("c{i}"))))
            .collect();
        assert!(slots.len() > 50);
        assert_eq!(slot("123456789"), 0x31c3, "CRC16-XMODEM check value");
    }

    #[test]
    fn bus_shards_are_stable_and_spread() {
        assert_eq!(bus_shard_of("1", "c"), bus_shard_of("1", "c"));
        let shards: std::collections::HashSet<u64> = (0..200)
            .map(|i| bus_shard_of("1", &format!("c{i}")))
            .collect();
        assert_eq!(shards.len() as u64, BUS_SHARDS);
    }

    #[test]
    fn fields_round_trip() {
        let f = subscriptions_field("1", "#server-to-user-a\u{1f}b");
        assert!(matches!(
            parse_field(&f),
            Some(Field::Subscriptions {
                app: "1",
                channel: "#server-to-user-a\u{1f}b"
            })
        ));
        let f = member_field("1", "presence-x", "u\u{1f}2");
        assert!(matches!(
            parse_field(&f),
            Some(Field::Member {
                app: "1",
                channel: "presence-x",
                user_id: "u\u{1f}2"
            })
        ));
        assert!(parse_field("x").is_none());
    }
}
