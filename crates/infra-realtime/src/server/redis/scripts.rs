//! The Lua scripts that change the cluster's state in Redis (its layout: `keys`).
//!
//! Every change that can be a cluster-wide transition (a channel's first or last subscriber,
//! a presence user's first or last node) is one script over that channel's keys, which share
//! one slot, so Redis (or the Redis Cluster master of that slot) decides it atomically: two
//! nodes can never both see themselves as first or last, and a webhook or `member_added` is
//! sent by exactly one node. Undoing a dead node's part reuses the same scripts, so two
//! survivors reaping it at once report each transition once.

use redis::Script;

/// The scripts, hashed once.
pub(super) struct Scripts {
    /// KEYS: subs; ARGV: node, count. Returns 1 when the channel became occupied, -1
    /// vacated, 0 neither.
    pub subscriptions: Script,
    /// KEYS: members, infos, held, version; ARGV: user, info, limit, held field.
    /// Returns {joined (0 = full), new member (1/0), {user, info, …}, version}.
    pub join: Script,
    /// KEYS: members, infos, held, version; ARGV: user, held field. Returns the version of the
    /// removal when the user left the channel, else 0.
    pub leave: Script,
    /// KEYS: lease, nodes; ARGV: node, lease ms, this process's token. Returns 1 when this
    /// process still held the lease, 0 when it had run out, -1 when another process held it.
    pub heartbeat: Script,
    /// KEYS: lease, node, reaping. Returns {0} while the lease is held, else moves the dead
    /// node's index into its reaping hash (so a node that comes back finds an empty index and
    /// writes everything again) and returns {1, field, value, …} of that hash: what is left to
    /// undo, a crashed reaper's leftovers included.
    pub reap_start: Script,
    /// KEYS: reaping, node, nodes; ARGV: node, fields undone…. Drops the undone fields, and
    /// the node from the list once it has neither index nor anything left to undo.
    pub reap_end: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            subscriptions: Script::new(SUBSCRIPTIONS),
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            heartbeat: Script::new(HEARTBEAT),
            reap_start: Script::new(REAP_START),
            reap_end: Script::new(REAP_END),
        }
    }
}

const SUBSCRIPTIONS: &str = r"
local before = redis.call('EXISTS', KEYS[1])
local count = tonumber(ARGV[2])
if count > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], count)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return redis.call('EXISTS', KEYS[1]) - before
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

const REAP_START: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0}
end
local held = redis.call('HGETALL', KEYS[2])
for i = 1, #held, 2 do
  redis.call('HSET', KEYS[3], held[i], held[i + 1])
end
redis.call('DEL', KEYS[2])
local out = redis.call('HGETALL', KEYS[3])
table.insert(out, 1, 1)
return out
";

const REAP_END: &str = r"
for i = 2, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
end
return 0
";
