//! How the remote backends (`RedisCache`, `UpstashRestCache`) lay keys out in one Redis, so
//! both read and write the same keys: an app half on the Redis protocol and half on Upstash's
//! REST API shares its cache and its rate limits.

/// How many keys one `SCAN`/`SSCAN` step asks for.
pub(crate) const SCAN_COUNT: usize = 1000;

/// The base key of one rate limiter (before the namespace prefix): the algorithm, limit and
/// window are part of it, so a change of any of them starts fresh counters. `RedisCache` writes
/// the same bytes straight into its command (`redis_key::RateLimitKey`, tested against this).
#[cfg_attr(not(feature = "upstash"), allow(dead_code))]
pub(crate) fn rate_limit_key(algorithm: &str, limit: u64, window_ms: u64, key: &str) -> String {
    format!("rl:{algorithm}:{limit}:{window_ms}:{key}")
}

/// `*`, `?`, `[`, `]` and `\` are glob syntax in `SCAN MATCH`; a prefix holding them must match
/// literally.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_match_literally() {
        assert_eq!(glob_escape("user:[1]*?\\"), "user:\\[1\\]\\*\\?\\\\");
        assert_eq!(glob_escape("plain:"), "plain:");
    }
}
