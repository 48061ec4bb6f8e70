//! The rate-limit Lua scripts: translations of `algorithm.rs`, run atomically by Redis with
//! its own clock (`TIME`), so app servers with skewed clocks still share one window.
//!
//! Every script takes `KEYS[1]` (the limiter's base key), `ARGV[1]` (limit) and `ARGV[2]`
//! (window in ms) and returns `{allowed, remaining, reset_after_ms}`. The sliding and fixed
//! windows derive per-window keys from `KEYS[1]` (`KEYS[1] .. ':' .. index`). On Redis Cluster
//! a script may only touch keys of the slot it was sent to, so `RedisClusterCache` puts the
//! limiter's key in a hash tag (`…:{user:1}`): every key derived from it by appending shares
//! that tag, hence the slot, and the scripts run unchanged.

use crate::config::RateLimitAlgorithm;

/// The script of `algorithm`.
pub fn rate_limit(algorithm: RateLimitAlgorithm) -> String {
    match algorithm {
        RateLimitAlgorithm::FixedWindow => fixed_window(),
        RateLimitAlgorithm::SlidingWindow => sliding_window(),
        RateLimitAlgorithm::TokenBucket => token_bucket(),
    }
}

const CLOCK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
";

/// The fixed-window script.
pub fn fixed_window() -> String {
    format!(
        "{CLOCK}{}",
        r"
local index = math.floor(now / window)
local key = KEYS[1] .. ':' .. index
local count = tonumber(redis.call('GET', key) or '0')
local reset = (index + 1) * window - now
if count < limit then
  count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, reset) end
  return {1, limit - count, reset}
end
return {0, limit - count, reset}
"
    )
}

/// The sliding-window script.
pub fn sliding_window() -> String {
    format!(
        "{CLOCK}{}",
        r"
local index = math.floor(now / window)
local cur_key = KEYS[1] .. ':' .. index
local prev_key = KEYS[1] .. ':' .. (index - 1)
local current = tonumber(redis.call('GET', cur_key) or '0')
local previous = tonumber(redis.call('GET', prev_key) or '0')
local into = now - index * window
local to_end = window - into
local weighted = previous * (window - into) / window
if weighted + current < limit then
  current = redis.call('INCR', cur_key)
  if current == 1 then redis.call('PEXPIRE', cur_key, to_end + window) end
  local remaining = math.floor(limit - (weighted + current))
  if remaining < 0 then remaining = 0 end
  return {1, remaining, to_end}
end
local wait = nil
if current < limit and previous > 0 then
  local t = window * (1 - (limit - current) / previous)
  local w = math.floor(math.max(t - into, 0)) + 1
  if w < to_end then wait = w end
end
if wait == nil then
  local t_next = 0
  if current >= limit then
    t_next = math.floor(math.max(window * (1 - limit / current), 0)) + 1
  end
  wait = to_end + t_next
end
local remaining = math.floor(limit - (weighted + current))
if remaining < 0 then remaining = 0 end
return {0, remaining, wait}
"
    )
}

/// The GCRA (token bucket) script.
pub fn token_bucket() -> String {
    format!(
        "{CLOCK}{}",
        r"
local interval = math.max(math.floor(window / limit), 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > window then
  return {0, 0, new_tat - window - now}
end
local ahead = new_tat - now
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(ahead, 1))
return {1, math.floor((window - ahead) / interval), ahead}
"
    )
}

/// Writes `KEYS[1]` = `ARGV[1]` for `ARGV[2]` ms and adds it to the tag sets `KEYS[2..]`,
/// extending a set's expiry to the key's when shorter (a fresh set has none: `PTTL` -1).
/// One script so the key is never written untagged, and one round trip.
pub(crate) fn set_tagged() -> String {
    format!("local value = ARGV[1]\n{SET_TAGGED}")
}

/// [`set_tagged`] with `ARGV[1]` in hex (see [`UNHEX`]).
#[cfg_attr(not(feature = "upstash"), allow(dead_code))]
pub(crate) fn set_tagged_hex() -> String {
    format!("{UNHEX}local value = unhex(ARGV[1])\n{SET_TAGGED}")
}

/// Stores every `KEYS[i]` = hex-decoded `ARGV[i + 1]` for `ARGV[1]` ms, atomically.
#[cfg_attr(not(feature = "upstash"), allow(dead_code))]
pub(crate) fn set_many_hex() -> String {
    format!("{UNHEX}local function value(i) return unhex(ARGV[i + 1]) end\n{SET_MANY}")
}

/// Stores every `KEYS[i]` = `ARGV[i + 1]` for `ARGV[1]` ms, atomically: `RedisClusterCache`'s
/// `set_many` sends one per slot, with that slot's keys.
#[cfg_attr(not(feature = "redis-cluster"), allow(dead_code))]
pub(crate) fn set_many() -> String {
    format!("local function value(i) return ARGV[i + 1] end\n{SET_MANY}")
}

/// The body of [`set_many`]; `value(i)` is the bytes to store under `KEYS[i]`.
const SET_MANY: &str = r"
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], value(i), 'PX', ARGV[1])
end
return #KEYS
";

/// Adds `ARGV[1]` to the tag set `KEYS[1]` and extends the set's expiry to `ARGV[2]` ms when
/// shorter (a fresh set has none: `PTTL` -1): one tag of a tagged write on Redis Cluster,
/// where the key and its tag sets live in different slots.
#[cfg_attr(not(feature = "redis-cluster"), allow(dead_code))]
pub(crate) const TAG_MEMBER: &str = r"
local ttl = tonumber(ARGV[2])
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
";

/// Upstash's REST API carries arguments as JSON strings, which cannot hold bytes that are not
/// UTF-8; such values travel in hex and these scripts turn them back into bytes inside Redis.
const UNHEX: &str = r"
local function unhex(h)
  return (string.gsub(h, '..', function(c) return string.char(tonumber(c, 16)) end))
end
";

/// The body of [`set_tagged`]; `value` is the bytes to store.
const SET_TAGGED: &str = r"
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], value, 'PX', ttl)
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
";

/// Renames the tag set `KEYS[1]` to `KEYS[2]` when it exists: keys tagged while the old
/// members are being deleted land in a fresh set instead of being lost with the old one.
pub(crate) const TAKE_TAG: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
";
