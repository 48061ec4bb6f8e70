//! Property tests of infra-core's parsers of outside input: channel and event names,
//! durations, the `Env` readers of integers and booleans, and a server's `Retry-After`. For
//! any input: no panic; a rejection is a typed `Error` of the right kind naming the field or
//! variable; a valid value round-trips.

use std::time::{Duration, UNIX_EPOCH};

use infra_core::{
    ChannelName, Env, ErrorKind, EventName, MAX_CHANNEL_NAME_LEN, MAX_EVENT_NAME_LEN,
    MAX_RETRY_AFTER, format_duration, parse_duration, parse_retry_after, parse_retry_after_at,
};
use proptest::prelude::*;

/// Modest case counts: CI runs the whole suite on two cores.
fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-=@,.;".contains(c)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_channel_name_is_accepted_exactly_when_the_rules_allow_it(name in ".{0,250}") {
        let expected = !name.is_empty()
            && name.len() <= MAX_CHANNEL_NAME_LEN
            && name.chars().all(is_channel_char);
        match ChannelName::new(name.clone()) {
            Ok(channel) => {
                prop_assert!(expected, "accepted {name:?}");
                prop_assert_eq!(channel.as_str(), name.as_str());
            }
            Err(err) => {
                prop_assert!(!expected, "refused {name:?}: {err}");
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                prop_assert_eq!(err.field(), Some("channel"));
            }
        }
    }

    #[test]
    fn valid_channel_names_round_trip_through_json(
        name in "(private-|presence-|private-encrypted-)?[A-Za-z0-9_=@,.;-]{1,100}"
    ) {
        let channel = ChannelName::new(name.clone()).unwrap();
        prop_assert_eq!(channel.to_string(), name.clone());
        let json = serde_json::to_string(&channel).unwrap();
        let back: ChannelName = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &channel);
        prop_assert_eq!(channel.is_private(), name.starts_with("private-"));
        prop_assert_eq!(channel.is_presence(), name.starts_with("presence-"));
    }

    #[test]
    fn channel_names_from_json_are_checked_too(name in ".{0,40}") {
        let json = serde_json::to_string(&name).unwrap();
        let parsed: Result<ChannelName, _> = serde_json::from_str(&json);
        prop_assert_eq!(parsed.is_ok(), ChannelName::new(name).is_ok());
    }

    #[test]
    fn any_event_name_is_accepted_exactly_when_the_rules_allow_it(
        name in "(pusher:|pusher_internal:)?.{0,210}"
    ) {
        let expected = !name.is_empty()
            && name.len() <= MAX_EVENT_NAME_LEN
            && !name.starts_with("pusher:")
            && !name.starts_with("pusher_internal:");
        match EventName::new(name.clone()) {
            Ok(event) => {
                prop_assert!(expected, "accepted {name:?}");
                prop_assert_eq!(event.as_str(), name.as_str());
                let json = serde_json::to_string(&event).unwrap();
                prop_assert_eq!(serde_json::from_str::<EventName>(&json).unwrap(), event);
            }
            Err(err) => {
                prop_assert!(!expected, "refused {name:?}: {err}");
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                prop_assert_eq!(err.field(), Some("event"));
            }
        }
    }

    #[test]
    fn any_duration_text_parses_or_is_a_config_error_naming_the_variable(
        text in prop_oneof![".{0,20}", "[0-9.]{0,25}(ms|us|µs|s|m|h|d|x| s)?"]
    ) {
        // The bare parser never panics...
        let parsed = parse_duration(&text);
        // ...and through `Env` a refusal names the variable.
        let env = Env::from_pairs([("TIMEOUT", text.as_str())]);
        match env.duration("TIMEOUT") {
            Ok(Some(d)) => prop_assert_eq!(Ok(d), parsed),
            Ok(None) => prop_assert!(text.trim().is_empty()),
            Err(err) => {
                prop_assert!(parsed.is_err());
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                prop_assert_eq!(err.variable(), Some("TIMEOUT"));
                prop_assert!(err.message().starts_with("TIMEOUT "), "{err}");
            }
        }
    }

    #[test]
    fn whole_units_parse_exactly(n in 0u64..1_000_000, unit in 0usize..5) {
        let (suffix, expected) = [
            ("ms", Duration::from_millis(n)),
            ("s", Duration::from_secs(n)),
            ("", Duration::from_secs(n)),
            ("m", Duration::from_secs(n * 60)),
            ("us", Duration::from_micros(n)),
        ][unit];
        prop_assert_eq!(parse_duration(&format!("{n}{suffix}")), Ok(expected));
    }

    #[test]
    fn formatted_durations_parse_back(ms in 0u64..100_000_000) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn any_integer_text_parses_or_names_the_variable(text in ".{0,30}") {
        let env = Env::from_pairs([("POOL_SIZE", text.as_str())]);
        match env.integer::<u32>("POOL_SIZE") {
            Ok(Some(n)) => prop_assert_eq!(Ok(n), text.trim().parse::<u32>()),
            Ok(None) => prop_assert!(text.trim().is_empty()),
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                prop_assert_eq!(err.variable(), Some("POOL_SIZE"));
            }
        }
        // A float reader over the same text behaves the same way.
        if let Err(err) = env.float("POOL_SIZE") {
            prop_assert_eq!(err.variable(), Some("POOL_SIZE"));
        }
    }

    #[test]
    fn integers_round_trip(n in any::<i64>(), pad_left in " {0,2}", pad_right in " {0,2}") {
        let text = format!("{pad_left}{n}{pad_right}");
        let env = Env::from_pairs([("N", text.as_str())]);
        prop_assert_eq!(env.integer::<i64>("N").unwrap(), Some(n));
        // Out of range for a narrower type is an error naming the variable, not a wrap.
        match u8::try_from(n) {
            Ok(small) => prop_assert_eq!(env.integer::<u8>("N").unwrap(), Some(small)),
            Err(_) => {
                let err = env.integer::<u8>("N").unwrap_err();
                prop_assert_eq!(err.variable(), Some("N"));
            }
        }
    }

    #[test]
    fn any_boolean_text_parses_or_names_the_variable(text in prop_oneof![
        ".{0,12}",
        "(?i)(true|false|yes|no|on|off|1|0)",
    ]) {
        let env = Env::from_pairs([("DEBUG", text.as_str())]);
        let word = text.trim().to_ascii_lowercase();
        match env.bool("DEBUG") {
            Ok(Some(b)) => {
                let expected = ["1", "true", "yes", "on"].contains(&word.as_str());
                prop_assert_eq!(b, expected);
                prop_assert!(["1", "true", "yes", "on", "0", "false", "no", "off"].contains(&word.as_str()));
            }
            Ok(None) => prop_assert!(word.is_empty()),
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::Config);
                prop_assert_eq!(err.variable(), Some("DEBUG"));
            }
        }
    }

    #[test]
    fn booleans_round_trip(b in any::<bool>()) {
        let text = b.to_string();
        let env = Env::from_pairs([("DEBUG", text.as_str())]);
        prop_assert_eq!(env.bool("DEBUG").unwrap(), Some(b));
    }

    #[test]
    fn any_retry_after_is_a_bounded_wait_or_an_error_naming_the_header(
        text in prop_oneof![
            ".{0,40}",
            " ?[0-9]{1,30} ?",
            "-?[0-9]{0,5}[.e+]?[0-9]{0,5}",
            // Near-dates: every field drawn, so impossible days, months and times and the
            // edges of the years an HTTP-date can name all come up.
            "(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Xyz), [0-9]{2} (Jan|Feb|Dec|Foo) (19[0-9]{2}|20[0-9]{2}|99[0-9]{2}|0000) [0-9]{2}:[0-9]{2}:[0-9]{2} (GMT|UTC)",
            "(Monday|Friday|Sunday), [0-9]{2}-(Jan|Feb|Dec)-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
            "(Mon|Fri|Sun) (Jan|Feb|Dec) [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}",
        ]
    ) {
        match parse_retry_after(&text) {
            Ok(wait) => prop_assert!(wait <= MAX_RETRY_AFTER, "{text:?}: {wait:?}"),
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                prop_assert_eq!(err.field(), Some("Retry-After"));
            }
        }
    }

    #[test]
    fn delay_seconds_are_read_exactly_up_to_the_cap(n in any::<u64>(), pad in " {0,2}") {
        prop_assert_eq!(
            parse_retry_after(&format!("{pad}{n}{pad}")).unwrap(),
            Duration::from_secs(n).min(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn http_dates_are_read_as_the_wait_from_now_up_to_the_cap(
        // Every second an HTTP-date can name: 1970 to the end of 9999.
        at_secs in 0u64..253_402_300_800,
        now_secs in 0u64..253_402_300_800,
    ) {
        let at = UNIX_EPOCH + Duration::from_secs(at_secs);
        let now = UNIX_EPOCH + Duration::from_secs(now_secs);
        let text = httpdate::fmt_http_date(at);
        prop_assert_eq!(
            parse_retry_after_at(&text, now).unwrap(),
            Duration::from_secs(at_secs.saturating_sub(now_secs)).min(MAX_RETRY_AFTER),
            "{}", text
        );
    }
}
