//! The Lua scripts that change the cluster's state in Redis (its layout: `keys`).
//!
//! Every change that can be a cluster-wide transition (a channel's first or last subscriber,
//! a presence user's first or last node, a dead node's state) is one script, so Redis decides
//! it atomically: two nodes can never both see themselves as first or last, and a webhook or
//! `member_added` is sent by exactly one node.

use redis::Script;

/// The scripts, hashed once.
pub(super) struct Scripts {
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
