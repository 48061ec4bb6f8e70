//! Where the cluster keeps its state in Redis, and the Lua scripts that change it.
//!
//! Every change that can be a cluster-wide transition (a channel's first or last subscriber,
//! a presence user's first or last node, a dead node's state) is one script, so Redis decides
//! it atomically: two nodes can never both see themselves as first or last, and a webhook or
//! `member_added` is sent by exactly one node.
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

use redis::Script;

/// Separates the parts of a node-hash field; channel names and app ids cannot hold it.
pub(crate) const SEP: char = '\u{1f}';

/// Key names under one prefix.
pub(crate) struct Keys {
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
pub(crate) fn subscriptions_field(app: &str, channel: &str) -> String {
    format!("s{SEP}{app}{SEP}{channel}")
}

/// The node-hash field of a presence user the node holds.
pub(crate) fn member_field(app: &str, channel: &str, user_id: &str) -> String {
    format!("p{SEP}{app}{SEP}{channel}{SEP}{user_id}")
}

/// What a node-hash field stands for.
pub(crate) enum Field<'a> {
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

pub(crate) fn parse_field(field: &str) -> Option<Field<'_>> {
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

/// The scripts, hashed once.
pub(crate) struct Scripts {
    /// KEYS: subs, channels, node, nodes; ARGV: node, channel, count, field.
    /// Returns 1 when the channel became occupied, -1 vacated, 0 neither.
    pub subscriptions: Script,
    /// KEYS: members, infos, node, version, nodes; ARGV: user, info, limit, field, node.
    /// Returns {joined (0 = full), new member (1/0), {user, info, …}, version}.
    pub join: Script,
    /// KEYS: members, infos, node, version; ARGV: user, field. Returns the version of the
    /// removal when the user left the channel, else 0.
    pub leave: Script,
    /// KEYS: lease, nodes; ARGV: node, lease ms, this process's token. Returns 1 when this
    /// process still held the lease, 0 when it had run out, -1 when another process held it.
    pub heartbeat: Script,
    /// KEYS: lease, node, nodes; ARGV: prefix, node. Undoes a node whose lease is gone;
    /// returns {kind, app, channel, user, version, …} with kind `r` (member removed) or `v`
    /// (vacated), or nil when the lease is held.
    pub reap: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            subscriptions: Script::new(SUBSCRIPTIONS),
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            heartbeat: Script::new(HEARTBEAT),
            reap: Script::new(REAP),
        }
    }
}

const SUBSCRIPTIONS: &str = r"
local before = redis.call('EXISTS', KEYS[1])
local count = tonumber(ARGV[3])
if count > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], count)
  redis.call('HSET', KEYS[3], ARGV[4], count)
  -- A node reaped while alive writes before its next heartbeat: listed, it can be reaped again.
  redis.call('SADD', KEYS[4], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[4])
end
local after = redis.call('EXISTS', KEYS[1])
if after == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
end
return after - before
";

const JOIN: &str = r"
local new = 0
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 0 then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
    if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
      return {0, 0, {}, 0}
    end
    new = 1
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
    redis.call('INCR', KEYS[4])
  end
  redis.call('HSET', KEYS[3], ARGV[4], 1)
  redis.call('SADD', KEYS[5], ARGV[5])
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
end
return {1, new, redis.call('HGETALL', KEYS[2]), tonumber(redis.call('GET', KEYS[4]) or '0')}
";

const LEAVE: &str = r"
if redis.call('HDEL', KEYS[3], ARGV[2]) == 0 then
  return 0
end
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  local version = redis.call('INCR', KEYS[4])
  -- An empty channel keeps nothing; a socket joining later starts from its own list.
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[4])
  end
  return version
end
return 0
";

const HEARTBEAT: &str = r"
local current = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
if current == ARGV[3] then
  return 1
elseif current then
  return -1
end
return 0
";

const REAP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local out = {}
local held = redis.call('HGETALL', KEYS[2])
for i = 1, #held, 2 do
  local kind, app, rest = string.match(held[i], '^(%a)\31([^\31]*)\31(.*)$')
  if kind then
    local base = ARGV[1] .. ':app:' .. app
    if kind == 's' then
      local subs = base .. ':subs:' .. rest
      redis.call('HDEL', subs, ARGV[2])
      if redis.call('EXISTS', subs) == 0 then
        redis.call('SREM', base .. ':channels', rest)
        table.insert(out, 'v')
        table.insert(out, app)
        table.insert(out, rest)
        table.insert(out, '')
        table.insert(out, '0')
      end
    elseif kind == 'p' then
      local channel, user = string.match(rest, '^([^\31]*)\31(.*)$')
      if channel then
        local members = base .. ':members:' .. channel
        if redis.call('HINCRBY', members, user, -1) <= 0 then
          redis.call('HDEL', members, user)
          redis.call('HDEL', base .. ':info:' .. channel, user)
          local versions = base .. ':version:' .. channel
          local version = redis.call('INCR', versions)
          if redis.call('EXISTS', members) == 0 then
            redis.call('DEL', versions)
          end
          table.insert(out, 'r')
          table.insert(out, app)
          table.insert(out, channel)
          table.insert(out, user)
          table.insert(out, tostring(version))
        end
      end
    end
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
return out
";

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
