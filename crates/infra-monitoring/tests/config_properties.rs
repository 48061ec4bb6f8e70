//! Property tests of the monitoring settings, through the public entry point
//! `MonitoringConfig::from_env` (so they hold whichever DSN parser sits behind it): no input
//! panics, a refusal is a `Config` error naming the variable and never echoing the DSN's key,
//! and a well-formed DSN selects Sentry.

use infra_core::{Env, ErrorKind};
use infra_monitoring::MonitoringConfig;
use proptest::prelude::*;

/// A public key no generated host or path can contain by accident.
const KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

fn dsn_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,60}",
        (
            "(https|http|ftp|)",
            "(://|:/|:)?",
            "(0a1b2c3d4e5f60718293a4b5c6d7e8f9(:[a-z]{0,4})?@)?",
            "[a-z0-9.\\-]{0,20}",
            "(:[0-9a-z]{0,6})?",
            "(/[a-z]{0,4})?(/[0-9a-z]{0,6})?/?",
        )
            .prop_map(|(scheme, sep, key, host, port, path)| {
                format!("{scheme}{sep}{key}{host}{port}{path}")
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_dsn_is_accepted_or_refused_by_name(
        variable in "SENTRY_DSN|NEXT_PUBLIC_SENTRY_DSN",
        raw in dsn_like(),
    ) {
        let env = Env::from_pairs([(variable.as_str(), raw.as_str())]);
        match MonitoringConfig::from_env(&env) {
            Ok(config) => {
                prop_assert_eq!(config.dsn.is_some(), !raw.trim().is_empty());
                let shown = format!("{:?}", config);
                prop_assert!(!shown.contains(KEY), "{}", shown);
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                prop_assert_eq!(err.variable(), Some(variable.as_str()));
                let shown = format!("{} {:?}", err, err);
                prop_assert!(!shown.contains(KEY), "{}", shown);
            }
        }
    }

    #[test]
    fn well_formed_dsns_select_sentry(
        scheme in "https|http",
        host in "[a-z][a-z0-9\\-]{0,12}(\\.[a-z]{2,6}){0,2}",
        port in proptest::option::of(1u16..),
        project in 1u64..10_000_000,
    ) {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let raw = format!("{scheme}://{KEY}@{host}{port}/{project}");
        let config = MonitoringConfig::from_env(&Env::from_pairs([("SENTRY_DSN", raw.as_str())]))
            .map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
        prop_assert!(config.dsn.is_some());
        let shown = format!("{:?}", config);
        prop_assert!(!shown.contains(KEY), "{}", shown);
    }

    #[test]
    fn rates_and_flags_are_checked_by_name(
        rate in prop_oneof![".{0,8}", "-?[0-9]{0,2}(\\.[0-9]{0,3})?"],
        flag in ".{0,6}",
    ) {
        let env = Env::from_pairs([
            ("SENTRY_SAMPLE_RATE", rate.as_str()),
            ("SENTRY_TRACES_SAMPLE_RATE", rate.as_str()),
            ("SENTRY_DEBUG", flag.as_str()),
        ]);
        match MonitoringConfig::from_env(&env) {
            Ok(config) => prop_assert!((0.0..=1.0).contains(&config.sample_rate)),
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                let variable = err.variable().unwrap_or_default();
                prop_assert!(
                    ["SENTRY_SAMPLE_RATE", "SENTRY_TRACES_SAMPLE_RATE", "SENTRY_DEBUG"]
                        .contains(&variable),
                    "{err}"
                );
            }
        }
    }
}
