//! A namespaced key written straight into a Redis command.

use std::io::Write;

use redis::{RedisWrite, ToRedisArgs};

/// `prefix` + `key` as one command argument. Writing both parts into the command's buffer
/// spares every call a `String` of its own for the full key.
#[derive(Clone, Copy)]
pub(crate) struct NamespacedKey<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) key: &'a str,
}

impl NamespacedKey<'_> {
    pub(crate) fn len(&self) -> usize {
        self.prefix.len() + self.key.len()
    }
}

impl ToRedisArgs for NamespacedKey<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.key.as_bytes());
    }
}

/// A rate limiter's key as one command argument: the namespace prefix, then the layout of
/// [`rate_limit_key`](crate::key_space::rate_limit_key) (`rl:{algorithm}:{limit}:{window_ms}:{key}`),
/// written without formatting machinery or a `String` of its own. Upstash's REST backend
/// builds the same bytes with `rate_limit_key`, so both share the counters.
#[derive(Clone, Copy)]
pub(crate) struct RateLimitKey<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) algorithm: &'a str,
    pub(crate) limit: u64,
    pub(crate) window_ms: u64,
    pub(crate) key: &'a str,
}

impl RateLimitKey<'_> {
    /// An upper bound of the argument's length, for sizing the command's buffer.
    pub(crate) fn max_len(&self) -> usize {
        self.prefix.len() + self.algorithm.len() + self.key.len() + 3 + 2 * 20 + 3
    }
}

impl ToRedisArgs for RateLimitKey<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        let (mut limit, mut window) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut arg = out.writer_for_next_arg();
        for part in [
            self.prefix,
            "rl:",
            self.algorithm,
            ":",
            limit.format(self.limit),
            ":",
            window.format(self.window_ms),
            ":",
            self.key,
        ] {
            // Writing into the command's own buffer cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{NamespacedKey, RateLimitKey};

    #[test]
    fn a_rate_limit_key_is_the_prefix_and_the_shared_layout() {
        let mut direct = redis::cmd("EVALSHA");
        direct.arg(RateLimitKey {
            prefix: "app:",
            algorithm: "sliding_window",
            limit: 100,
            window_ms: 60_000,
            key: "user:1",
        });
        let mut formatted = redis::cmd("EVALSHA");
        formatted.arg(format!(
            "app:{}",
            crate::key_space::rate_limit_key("sliding_window", 100, 60_000, "user:1")
        ));
        assert_eq!(direct.get_packed_command(), formatted.get_packed_command());
    }

    #[test]
    fn is_one_argument_holding_prefix_and_key() {
        let mut namespaced = redis::cmd("GET");
        namespaced.arg(NamespacedKey {
            prefix: "app:",
            key: "user:1",
        });
        let mut plain = redis::cmd("GET");
        plain.arg("app:user:1");
        assert_eq!(namespaced.get_packed_command(), plain.get_packed_command());
    }
}
