//! A Redis key prefix of one test's own: other suites share the local Redis, and pub/sub
//! channels are global, so every clustered test names its keys and bus under a fresh prefix.

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A prefix no other test (or suite) uses; whatever a failing test leaves under it is deleted
/// when the guard drops (a passing test checks itself that nothing is left).
pub struct Prefix(String);

/// A fresh prefix naming `test`, this process and the moment.
pub fn unique_prefix(test: &str) -> Prefix {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Prefix(format!("rt-test-{test}-{}-{nanos:x}", std::process::id()))
}

impl std::ops::Deref for Prefix {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        use redis::Commands;
        let Ok(mut conn) = redis::Client::open(REDIS_URL).and_then(|c| c.get_connection()) else {
            return;
        };
        let mut keys: Vec<String> = conn.keys(format!("{}:*", self.0)).unwrap_or_default();
        // The cluster's membership keys carry the prefix as their hash tag.
        let tagged: Vec<String> = conn.keys(format!("{{{}}}:*", self.0)).unwrap_or_default();
        keys.extend(tagged);
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = conn.del(keys);
        }
    }
}
