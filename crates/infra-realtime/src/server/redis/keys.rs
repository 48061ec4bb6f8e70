//! Where the cluster keeps its state in Redis: the key layout and the node-hash fields.
//!
//! Layout under the prefix `p` (app `a`, channel `c`, node `n`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `p:bus` | pub/sub channel | events and terminations relayed between nodes |
//! | `p:nodes` | set | node ids that may hold state |
//! | `p:lease:n` | string with TTL | the node's lease; gone = the node is dead |
//! | `p:node:n` | hash | what the node holds: `s␟a␟c` → subscriptions, `p␟a␟c␟user` → 1 |
//! | `p:app:a:channels` | set | occupied channels |
//! | `p:app:a:subs:c` | hash | node → its subscriptions to `c` |
//! | `p:app:a:members:c` | hash | user → how many nodes hold it |
//! | `p:app:a:info:c` | hash | user → its `user_info` JSON |
//! | `p:app:a:version:c` | counter | bumped by every member added or removed |
//!
//! The version orders a channel's member list against the `member_added` / `member_removed`
//! frames in flight: a socket whose list already reflects a change is not told it again.
//!
//! The node hash is what lets a survivor undo a dead node's part without trusting it. The
//! scripts name keys they build from the prefix, so this works on one Redis (or a replicated
//! primary), not on Redis Cluster, whose slots need every key declared.

/// Separates the parts of a node-hash field; channel names and app ids cannot hold it.
pub(super) const SEP: char = '\u{1f}';

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
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn bus(&self) -> String {
        format!("{}:bus", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    pub fn lease(&self, node: &str) -> String {
        format!("{}:lease:{node}", self.prefix)
    }
    pub fn node_state(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }
    pub fn channels(&self, app: &str) -> String {
        format!("{}:app:{app}:channels", self.prefix)
    }
    pub fn subscriptions(&self, app: &str, channel: &str) -> String {
        format!("{}:app:{app}:subs:{channel}", self.prefix)
    }
    pub fn members(&self, app: &str, channel: &str) -> String {
        format!("{}:app:{app}:members:{channel}", self.prefix)
    }
    pub fn infos(&self, app: &str, channel: &str) -> String {
        format!("{}:app:{app}:info:{channel}", self.prefix)
    }
    pub fn version(&self, app: &str, channel: &str) -> String {
        format!("{}:app:{app}:version:{channel}", self.prefix)
    }
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
