//! Property tests of `DATABASE_URL` / `DATABASE_REPLICA_URLS` parsing: no input panics, a
//! refusal is a `Config` error naming the variable and never echoing the password, and a
//! valid URL is kept as given.

use infra_core::{Env, ErrorKind};
use infra_db::DbConfig;
use proptest::prelude::*;

/// A password no generated host, user or database name can contain by accident.
const PASSWORD: &str = "pw-Zq9xK2";

fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,60}",
        // Near misses: every part optional or a little wrong.
        (
            "(postgres|postgresql|mysql|http|)",
            "(://|:/|:)?",
            "([a-z]{1,8}(:pw-Zq9xK2)?@)?",
            "[a-z0-9.\\-\\[\\]:]{0,20}",
            "(:[0-9a-z]{0,6})?",
            "(/[a-z_]{0,8})?",
            "(\\?sslmode=[a-z\\-]{0,12})?",
        )
            .prop_map(|(scheme, sep, user, host, port, path, query)| {
                format!("{scheme}{sep}{user}{host}{port}{path}{query}")
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_database_url_is_accepted_or_refused_by_name(raw in url_like()) {
        let env = Env::from_pairs([("DATABASE_URL", raw.as_str())]);
        match DbConfig::from_env(&env) {
            Ok(config) => {
                prop_assert_eq!(config.url.expose(), raw.trim());
                let shown = format!("{:?}", config);
                prop_assert!(!shown.contains(PASSWORD), "{}", shown);
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                prop_assert_eq!(err.variable(), Some("DATABASE_URL"));
                let shown = format!("{} {:?}", err, err);
                prop_assert!(!shown.contains(PASSWORD), "{}", shown);
            }
        }
    }

    #[test]
    fn any_replica_list_is_accepted_or_refused_by_name(
        raws in proptest::collection::vec(url_like(), 1..4)
    ) {
        let list = raws.join(",");
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://app@db.internal/app"),
            ("DATABASE_REPLICA_URLS", list.as_str()),
        ]);
        match DbConfig::from_env(&env) {
            Ok(config) => {
                prop_assert!(config.replica_urls.iter().all(|u| !u.expose().trim().is_empty()));
                let shown = format!("{:?}", config);
                prop_assert!(!shown.contains(PASSWORD), "{}", shown);
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                prop_assert_eq!(err.variable(), Some("DATABASE_REPLICA_URLS"));
                let shown = format!("{} {:?}", err, err);
                prop_assert!(!shown.contains(PASSWORD), "{}", shown);
            }
        }
    }

    #[test]
    fn valid_database_urls_round_trip(
        scheme in "postgres|postgresql",
        user in "[a-z][a-z0-9_]{0,10}",
        host in "[a-z][a-z0-9\\-]{0,15}(\\.[a-z]{2,6})?",
        port in proptest::option::of(1u16..),
        database in "[a-z][a-z0-9_]{0,15}",
        sslmode in proptest::option::of("disable|prefer|require|verify-ca|verify-full"),
    ) {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = sslmode.map(|m| format!("?sslmode={m}")).unwrap_or_default();
        let raw = format!("{scheme}://{user}:{PASSWORD}@{host}{port}/{database}{query}");
        let config = DbConfig::new(&raw).unwrap();
        prop_assert_eq!(config.url.expose(), raw.as_str());
        let parsed = url::Url::parse(config.url.expose()).unwrap();
        prop_assert_eq!(parsed.host_str(), Some(host.as_str()));
        prop_assert_eq!(parsed.path(), format!("/{database}"));
        let shown = format!("{:?}", config);
        prop_assert!(!shown.contains(PASSWORD), "{}", shown);
    }

    #[test]
    fn pool_size_and_timeouts_are_checked_by_name(size in ".{0,8}", timeout in ".{0,8}") {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://app@db.internal/app"),
            ("DATABASE_POOL_SIZE", size.as_str()),
            ("DATABASE_ACQUIRE_TIMEOUT", timeout.as_str()),
        ]);
        match DbConfig::from_env(&env) {
            Ok(config) => prop_assert!(config.pool_size >= 1 && !config.acquire_timeout.is_zero()),
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                let variable = err.variable().unwrap_or_default();
                prop_assert!(
                    ["DATABASE_POOL_SIZE", "DATABASE_ACQUIRE_TIMEOUT"].contains(&variable),
                    "{err}"
                );
            }
        }
    }
}
