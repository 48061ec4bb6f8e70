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

#[cfg(test)]
mod tests {
    use super::NamespacedKey;

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
