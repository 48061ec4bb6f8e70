//! Property tests of the Inngest settings read from the environment: no input panics, a
//! refusal is a `Config` error naming an `INNGEST_` variable and never echoing the event key,
//! and an accepted configuration never shows the key in `Debug`.

use infra_core::{Env, ErrorKind};
use infra_jobs::JobsConfig;
use proptest::prelude::*;

/// An event key no other generated value can contain by accident.
const EVENT_KEY: &str = "ek-Zq9xK2pW";

fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,30}",
        "(https?|ftp|)(://)?[a-z0-9.:\\-]{0,16}(/[a-z]{0,5})?",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_inngest_settings_are_accepted_or_refused_by_name(
        key in proptest::option::of(Just(EVENT_KEY.to_owned())),
        dev in proptest::option::of(prop_oneof!["true|false|1|0|yes|no", ".{0,6}", url_like()]),
        base in proptest::option::of(url_like()),
        event_api in proptest::option::of(url_like()),
        timeout in proptest::option::of(prop_oneof!["[0-9]{1,3}(ms|s)", ".{0,5}"]),
    ) {
        let pairs: Vec<(&str, String)> = [
            ("INNGEST_EVENT_KEY", key),
            ("INNGEST_DEV", dev),
            ("INNGEST_BASE_URL", base),
            ("INNGEST_EVENT_API_BASE_URL", event_api),
            ("INNGEST_TIMEOUT", timeout),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
        let env = Env::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        match JobsConfig::from_env(&env) {
            Ok(config) => {
                let shown = format!("{:?}", config);
                prop_assert!(!shown.contains(EVENT_KEY), "{}", shown);
            }
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                let variable = err.variable().unwrap_or_default();
                prop_assert!(variable.starts_with("INNGEST_"), "{}", err);
                let shown = format!("{} {:?}", err, err);
                prop_assert!(!shown.contains(EVENT_KEY), "{}", shown);
            }
        }
    }
}
