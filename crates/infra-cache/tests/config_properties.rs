//! Property tests of the Redis URL and the cache settings read from the environment: no input
//! panics, a refusal is a `Config` error naming the variable the value came from (or, for an
//! Upstash REST endpoint without its token, the token's variable) and never echoing the
//! password, and a valid `redis://`/`rediss://` URL selects Redis at that host.

use infra_cache::{CacheBackendConfig, CacheConfig};
use infra_core::{Env, ErrorKind};
use proptest::prelude::*;

/// A password no generated host or user can contain by accident.
const PASSWORD: &str = "pw-Zq9xK2";

fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,60}",
        (
            "(redis|rediss|http|https|unix|)",
            "(://|:/|:)?",
            "([a-z]{0,8}(:pw-Zq9xK2)?@)?",
            "[a-z0-9.\\-\\[\\]:]{0,20}",
            "(:[0-9a-z]{0,6})?",
            "(/[0-9a-z]{0,3})?",
        )
            .prop_map(|(scheme, sep, user, host, port, path)| {
                format!("{scheme}{sep}{user}{host}{port}{path}")
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_redis_url_is_accepted_or_refused_by_name(
        variable in "REDIS_URL|UPSTASH_REDIS_REST_URL",
        raw in url_like(),
    ) {
        let env = Env::from_pairs([(variable.as_str(), raw.as_str())]);
        match CacheConfig::from_env(&env) {
            Ok(config) => {
                let shown = format!("{:?}", config);
                prop_assert!(!shown.contains(PASSWORD), "{}", shown);
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                // An http(s) Upstash URL is the REST endpoint: refused for want of its token,
                // the error names the token's variable instead.
                let named = err.variable().unwrap_or_default();
                let rest_endpoint = variable == "UPSTASH_REDIS_REST_URL"
                    && named == "UPSTASH_REDIS_REST_TOKEN";
                prop_assert!(named == variable || rest_endpoint, "{}", err);
                let shown = format!("{} {:?}", err, err);
                prop_assert!(!shown.contains(PASSWORD), "{}", shown);
            }
        }
    }

    #[test]
    fn valid_redis_urls_select_redis_at_their_host(
        scheme in "redis|rediss",
        user in proptest::option::of("[a-z]{1,8}"),
        host in "[a-z][a-z0-9\\-]{0,15}(\\.[a-z]{2,6})?",
        port in proptest::option::of(1u16..),
        db in proptest::option::of(0u8..16),
    ) {
        let auth = match user {
            Some(user) => format!("{user}:{PASSWORD}@"),
            None => format!(":{PASSWORD}@"),
        };
        let port_part = port.map(|p| format!(":{p}")).unwrap_or_default();
        let db_part = db.map(|d| format!("/{d}")).unwrap_or_default();
        let raw = format!("{scheme}://{auth}{host}{port_part}{db_part}");
        let config = CacheConfig::from_env(&Env::from_pairs([("REDIS_URL", raw.as_str())])).unwrap();
        let CacheBackendConfig::Redis(redis) = config.backend else {
            return Err(TestCaseError::fail(format!("{raw} did not select Redis")));
        };
        let parsed = url::Url::parse(redis.url.expose()).unwrap();
        prop_assert_eq!(parsed.scheme(), scheme.as_str());
        prop_assert_eq!(parsed.host_str(), Some(host.as_str()));
        prop_assert_eq!(parsed.port(), port);
        prop_assert_eq!(parsed.password(), Some(PASSWORD));
        let shown = format!("{:?}", redis);
        prop_assert!(!shown.contains(PASSWORD), "{}", shown);
    }

    #[test]
    fn cache_settings_are_checked_by_name(
        pool in ".{0,6}",
        timeout in ".{0,6}",
        algorithm in ".{0,14}",
        policy in ".{0,12}",
    ) {
        let env = Env::from_pairs([
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_POOL_SIZE", pool.as_str()),
            ("REDIS_COMMAND_TIMEOUT", timeout.as_str()),
            ("INFRA_RATE_LIMIT_ALGORITHM", algorithm.as_str()),
            ("INFRA_RATE_LIMIT_FAILURE_POLICY", policy.as_str()),
        ]);
        if let Err(err) = CacheConfig::from_env(&env) {
            prop_assert_eq!(err.kind(), ErrorKind::Config);
            let variable = err.variable().unwrap_or_default();
            prop_assert!([
                "REDIS_POOL_SIZE",
                "REDIS_COMMAND_TIMEOUT",
                "INFRA_RATE_LIMIT_ALGORITHM",
                "INFRA_RATE_LIMIT_FAILURE_POLICY",
            ]
            .contains(&variable), "{err}");
        }
    }

    #[test]
    fn memory_limit_is_checked_by_name(max in ".{0,12}") {
        let env = Env::from_pairs([("INFRA_CACHE_MAX_BYTES", max.as_str())]);
        match CacheConfig::from_env(&env) {
            Ok(config) => {
                let CacheBackendConfig::Memory(memory) = config.backend else {
                    return Err(TestCaseError::fail("no Redis URL selects memory"));
                };
                prop_assert!(memory.max_bytes >= 1024);
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                prop_assert_eq!(err.variable(), Some("INFRA_CACHE_MAX_BYTES"));
            }
        }
    }
}
