//! Property tests of the Pusher settings read from the environment: no input panics, a
//! refusal is a `Config` error naming a `PUSHER_` variable and never echoing the secret, and an
//! accepted configuration calls the host it was given.

use infra_core::{Env, ErrorKind};
use infra_realtime::RealtimeConfig;
use proptest::prelude::*;

/// A secret no other generated value can contain by accident.
const SECRET: &str = "sk-Zq9xK2pW";

fn maybe(strategy: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(strategy)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_pusher_settings_are_accepted_or_refused_by_name(
        app_id in maybe(prop_oneof!["[0-9]{1,7}", ".{0,8}"]),
        key in maybe("[a-f0-9]{0,20}"),
        secret in proptest::option::of(Just(SECRET.to_owned())),
        host in maybe(prop_oneof![
            "[a-z][a-z0-9\\-]{0,10}(\\.[a-z]{2,5}){0,2}",
            "(https?://)?[a-z0-9.:/@\\-]{0,16}",
            ".{0,16}",
        ]),
        port in maybe(prop_oneof!["[0-9]{1,5}", ".{0,6}"]),
        tls in maybe(prop_oneof!["true|false|1|0", ".{0,5}"]),
        cluster in maybe(prop_oneof!["[a-z]{2}[0-9]?", ".{0,6}"]),
        timeout in maybe(prop_oneof!["[0-9]{1,3}(ms|s)", ".{0,5}"]),
    ) {
        let pairs: Vec<(&str, String)> = [
            ("PUSHER_APP_ID", app_id),
            ("PUSHER_KEY", key),
            ("PUSHER_SECRET", secret),
            ("PUSHER_HOST", host.clone()),
            ("PUSHER_PORT", port),
            ("PUSHER_USE_TLS", tls),
            ("PUSHER_CLUSTER", cluster),
            ("PUSHER_TIMEOUT", timeout),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect();
        let env = Env::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        match RealtimeConfig::from_env(&env) {
            Ok(RealtimeConfig::Pusher(config)) => {
                let shown = format!("{:?}", config);
                prop_assert!(!shown.contains(SECRET), "{}", shown);
                // The API is called at the host given, not somewhere the value happens to parse to.
                if let Some(host) = host.filter(|h| !h.trim().is_empty()) {
                    let expected = url::Host::parse(host.trim()).unwrap().to_string();
                    prop_assert_eq!(config.base_url.host_str(), Some(expected.as_str()));
                }
            }
            Ok(_) => {}
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                let variable = err.variable().unwrap_or_default();
                prop_assert!(variable.starts_with("PUSHER_"), "{}", err);
                let shown = format!("{} {:?}", err, err);
                prop_assert!(!shown.contains(SECRET), "{}", shown);
            }
        }
    }
}

#[test]
fn a_host_with_a_scheme_or_credentials_is_refused_not_misread() {
    for host in [
        "https://soketi.internal",
        "@soketi.internal",
        "soketi.internal/api",
        "a b",
    ] {
        let env = Env::from_pairs([
            ("PUSHER_APP_ID", "1"),
            ("PUSHER_KEY", "key"),
            ("PUSHER_SECRET", SECRET),
            ("PUSHER_HOST", host),
        ]);
        let err = RealtimeConfig::from_env(&env).unwrap_err();
        assert_eq!(err.variable(), Some("PUSHER_HOST"), "{host}: {err}");
        assert!(err.to_string().contains("host name"), "{err}");
    }
    let env = Env::from_pairs([
        ("PUSHER_APP_ID", "1"),
        ("PUSHER_KEY", "key"),
        ("PUSHER_SECRET", SECRET),
        ("PUSHER_HOST", "Soketi.Internal"),
        ("PUSHER_PORT", "6001"),
        ("PUSHER_USE_TLS", "false"),
    ]);
    let RealtimeConfig::Pusher(config) = RealtimeConfig::from_env(&env).unwrap() else {
        panic!("all three credentials select Pusher");
    };
    assert_eq!(config.base_url.as_str(), "http://soketi.internal:6001/");
}
