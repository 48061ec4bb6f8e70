//! Where a key lives in Redis Cluster, and the hash-tagged keys of the operations that touch
//! more than one key.
//!
//! Redis Cluster hashes a key to one of 16384 slots with CRC16 (XMODEM) — of the whole key, or,
//! when the key holds a non-empty `{…}`, of what the first such pair encloses (its hash tag).
//! A command or script may only touch keys of one slot. The cache keys keep the single-server
//! layout (`{prefix}{key}`, the prefix free of braces); the keys that must share a slot are
//! laid out around a hash tag:
//!
//! - a rate limiter's base key is the single-server layout with the caller's key in a tag:
//!   `{prefix}rl:{algorithm}:{limit}:{window_ms}:{<key>}`; the window scripts append
//!   `:<index>` to it, which keeps the tag;
//! - a tag set is `{prefix}__tag:{<tag>}`, and the set it is renamed to while its members are
//!   deleted is the same key plus a suffix.
//!
//! Inside a tag, `{`, `}` and `%` are written `%7B`, `%7D` and `%25`, so any text makes a
//! valid, non-empty tag and two texts never make the same one.

use std::io::Write;

use redis::{RedisWrite, ToRedisArgs};

/// Slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// The slot of `prefix` + `key` (the prefix holds no braces, so a tag can only be in `key`).
pub(crate) fn key_slot(prefix: &str, key: &str) -> u16 {
    if let Some(tag) = hash_tag(key.as_bytes()) {
        return crc(&[tag]);
    }
    crc(&[prefix.as_bytes(), key.as_bytes()])
}

/// The slot of a key whose hash tag encloses `text` escaped (see the module docs).
pub(crate) fn tagged_slot(text: &str) -> u16 {
    let mut state = crc16::State::<crc16::XMODEM>::new();
    for part in escaped(text) {
        state.update(part.as_bytes());
    }
    state.get() % SLOTS
}

/// What the first `{…}` of `key` encloses, when that is not empty (Redis's rule).
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let close = key[open + 1..].iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

fn crc(parts: &[&[u8]]) -> u16 {
    let mut state = crc16::State::<crc16::XMODEM>::new();
    for part in parts {
        state.update(part);
    }
    state.get() % SLOTS
}

/// `text` in pieces, with `{`, `}` and `%` percent-encoded: borrowed runs between them.
fn escaped(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['{', '}', '%']) {
            Some(0) => {
                let (special, tail) = rest.split_at(1);
                rest = tail;
                Some(match special {
                    "{" => "%7B",
                    "}" => "%7D",
                    _ => "%25",
                })
            }
            Some(at) => {
                let (run, tail) = rest.split_at(at);
                rest = tail;
                Some(run)
            }
            None => Some(std::mem::take(&mut rest)),
        }
    })
}

/// A rate limiter's base key on Redis Cluster, written straight into the command:
/// `{prefix}rl:{algorithm}:{limit}:{window_ms}:{<key>}` (the key escaped).
#[derive(Clone, Copy)]
pub(crate) struct TaggedRateLimitKey<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) algorithm: &'a str,
    pub(crate) limit: u64,
    pub(crate) window_ms: u64,
    pub(crate) key: &'a str,
}

impl TaggedRateLimitKey<'_> {
    /// An upper bound of the argument's length, for sizing the command's buffer.
    pub(crate) fn max_len(&self) -> usize {
        self.prefix.len() + self.algorithm.len() + 3 * self.key.len() + 3 + 2 * 20 + 5
    }

    /// The slot every key of this limiter lives in.
    pub(crate) fn slot(&self) -> u16 {
        tagged_slot(self.key)
    }
}

impl ToRedisArgs for TaggedRateLimitKey<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        let (mut limit, mut window) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        for part in [
            self.prefix,
            "rl:",
            self.algorithm,
            ":",
            limit.format(self.limit),
            ":",
            window.format(self.window_ms),
            ":{",
        ] {
            let _ = arg.write_all(part.as_bytes());
        }
        for part in escaped(self.key) {
            let _ = arg.write_all(part.as_bytes());
        }
        let _ = arg.write_all(b"}");
    }
}

/// The set of keys tagged `tag` on Redis Cluster: `{prefix}__tag:{<tag>}`.
pub(crate) fn tag_set_key(prefix: &str, tag: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + crate::TAG_KEY_PREFIX.len() + tag.len() + 2);
    key.push_str(prefix);
    key.push_str(crate::TAG_KEY_PREFIX);
    key.push('{');
    key.extend(escaped(tag));
    key.push('}');
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(key: TaggedRateLimitKey<'_>) -> Vec<u8> {
        let mut cmd = redis::cmd("X");
        cmd.arg(key);
        let packed = cmd.get_packed_command();
        // `*2\r\n$1\r\nX\r\n$<n>\r\n<arg>\r\n`: the argument after its length line.
        let text = String::from_utf8(packed).unwrap();
        let arg = text.split("\r\n").nth(4).unwrap().to_owned();
        arg.into_bytes()
    }

    #[test]
    fn slots_match_redis_reference_values() {
        // From the Redis Cluster specification: CRC16 of "123456789" is 0x31C3 (below 16384, so
        // also its slot).
        assert_eq!(crc(&[b"123456789"]), 0x31C3);
        // `CLUSTER KEYSLOT` answers (redis 7.0): foo 12182, bar 5061, {user1000}.following and
        // {user1000}.followers both 3443 (the tag alone decides).
        assert_eq!(key_slot("", "foo"), 12182);
        assert_eq!(key_slot("b", "ar"), 5061);
        assert_eq!(key_slot("", "{user1000}.following"), 3443);
        assert_eq!(key_slot("", "{user1000}.followers"), 3443);
        // An empty `{}` is no tag: the whole key is hashed.
        assert_eq!(key_slot("", "{}foo"), crc(&[b"{}foo"]));
    }

    #[test]
    fn a_limiters_keys_share_its_tags_slot() {
        for key in ["user:1", "}x", "{", "a{b}c", "100%", "%7B", ""] {
            let base = TaggedRateLimitKey {
                prefix: "app:",
                algorithm: "sliding_window",
                limit: 10,
                window_ms: 60_000,
                key,
            };
            let bytes = full(base);
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(bytes.len() <= base.max_len(), "{text}");
            if key.is_empty() {
                continue;
            }
            let slot = key_slot("", &text);
            assert_eq!(slot, base.slot(), "{text}");
            // The window scripts append `:<index>`.
            assert_eq!(key_slot("", &format!("{text}:123")), slot, "{text}");
        }
    }

    #[test]
    fn escaping_keeps_different_keys_apart() {
        let layout = |key| {
            full(TaggedRateLimitKey {
                prefix: "",
                algorithm: "fixed_window",
                limit: 1,
                window_ms: 1,
                key,
            })
        };
        assert_eq!(layout("user:1"), b"rl:fixed_window:1:1:{user:1}");
        assert_eq!(layout("{"), b"rl:fixed_window:1:1:{%7B}");
        assert_ne!(layout("{"), layout("%7B"));
        assert_ne!(layout("}"), layout("%7D"));
        assert_eq!(tag_set_key("p:", "team:{7}"), "p:__tag:{team:%7B7%7D}");
        let set = tag_set_key("p:", "}");
        assert_eq!(
            key_slot("", &format!("{set}:invalidating:0123")),
            key_slot("", &set)
        );
    }
}
