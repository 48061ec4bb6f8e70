//! `X-Inngest-Signature` verification.
//!
//! The algorithm is Inngest's SDK specification (github.com/inngest/inngest,
//! `docs/SDK_SPEC.md` §4.1.3): hex HMAC-SHA256 of the raw body followed by the `t` string,
//! keyed with the signing key minus `signkey-<env>-`; 5-minute window; fallback key. The
//! vector below was computed with that algorithm; the hashed-key example is the
//! specification's own (§4.1.4).

use infra_core::ErrorKind;
use infra_jobs::{
    SIGNATURE_HEADER, SIGNING_KEY_FALLBACK_VAR, SIGNING_KEY_VAR, SignatureHeader, SigningKey,
    SigningKeys,
};
use proptest::prelude::*;

const KEY: &str = "signkey-test-12345678";
const BODY: &str = r#"{"event":{"name":"test/event"}}"#;
const T: i64 = 1_700_000_000;
const SIGNATURE: &str = "38f2bec2860959dae466bc9cd374e41e012ee4b28c59c7dcda26f5e5cc8e667e";

fn header(signature: &str, t: i64) -> String {
    format!("t={t}&s={signature}")
}

#[test]
fn the_vector_signs_and_verifies() {
    let keys = SigningKeys::new(KEY);
    assert_eq!(keys.primary().signature(BODY.as_bytes(), T), SIGNATURE);
    let used = keys
        .verify_at(Some(&header(SIGNATURE, T)), BODY.as_bytes(), T + 60)
        .unwrap();
    assert_eq!(used.variable(), "INNGEST_SIGNING_KEY");
}

#[test]
fn the_hashed_key_is_the_specifications_example() {
    let key = SigningKey::new("INNGEST_SIGNING_KEY", "signkey-prod-12345678");
    assert_eq!(
        key.hashed().unwrap().expose(),
        "signkey-prod-b2ed992186a5cb19f6668aade821f502c1d00970dfd0e35128d51bac4649916c"
    );
    let err = SigningKey::new("INNGEST_SIGNING_KEY", "signkey-prod-not-hex-secretvalue")
        .hashed()
        .unwrap_err();
    assert_eq!(err.variable(), Some("INNGEST_SIGNING_KEY"));
    assert!(!format!("{err} {err:?}").contains("secretvalue"));
}

#[test]
fn a_tampered_body_or_signature_is_refused() {
    let keys = SigningKeys::new(KEY);
    for body in [
        r#"{"event":{"name":"test/evenT"}}"#,
        r#"{"event":{"name":"test/event"}} "#,
        r#"{"event": {"name":"test/event"}}"#,
        "",
    ] {
        let err = keys
            .verify_at(Some(&header(SIGNATURE, T)), body.as_bytes(), T)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some(SIGNATURE_HEADER));
        assert!(err.to_string().contains("does not match"), "{err}");
    }
    // One flipped digit of the signature, and the right signature for another timestamp.
    let flipped = format!("0{}", &SIGNATURE[1..]);
    assert!(
        keys.verify_at(Some(&header(&flipped, T)), BODY.as_bytes(), T)
            .is_err()
    );
    assert!(
        keys.verify_at(Some(&header(SIGNATURE, T + 1)), BODY.as_bytes(), T)
            .is_err()
    );
    // Another key, and a missing header.
    let other = SigningKeys::new("signkey-test-87654321");
    assert!(
        other
            .verify_at(Some(&header(SIGNATURE, T)), BODY.as_bytes(), T)
            .is_err()
    );
    let err = keys.verify_at(None, BODY.as_bytes(), T).unwrap_err();
    assert_eq!(err.field(), Some(SIGNATURE_HEADER));
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn timestamps_outside_five_minutes_are_refused() {
    let keys = SigningKeys::new(KEY);
    let h = header(SIGNATURE, T);
    assert!(keys.verify_at(Some(&h), BODY.as_bytes(), T + 300).is_ok());
    assert!(keys.verify_at(Some(&h), BODY.as_bytes(), T - 300).is_ok());
    let stale = keys
        .verify_at(Some(&h), BODY.as_bytes(), T + 301)
        .unwrap_err();
    assert_eq!(stale.field(), Some(SIGNATURE_HEADER));
    assert!(stale.to_string().contains("stale"), "{stale}");
    let future = keys
        .verify_at(Some(&h), BODY.as_bytes(), T - 301)
        .unwrap_err();
    assert!(future.to_string().contains("future"), "{future}");
    // A fresh signature made now passes the clock-reading entry point.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let fresh = keys.primary().header_value(BODY.as_bytes(), now);
    assert!(keys.verify(Some(&fresh), BODY.as_bytes()).is_ok());
    assert!(keys.verify(Some(&h), BODY.as_bytes()).is_err());
}

#[test]
fn the_fallback_key_verifies_during_rotation() {
    // Inngest still signs with the old key, which the app now holds as its fallback.
    let keys = SigningKeys::new("signkey-test-aabbccdd").with_fallback(KEY);
    let used = keys
        .verify_at(Some(&header(SIGNATURE, T)), BODY.as_bytes(), T)
        .unwrap();
    assert_eq!(used.variable(), "INNGEST_SIGNING_KEY_FALLBACK");
    let err = SigningKeys::new("signkey-test-aabbccdd")
        .with_fallback("signkey-test-eeff0011")
        .verify_at(Some(&header(SIGNATURE, T)), BODY.as_bytes(), T)
        .unwrap_err();
    assert!(
        err.to_string().contains("INNGEST_SIGNING_KEY_FALLBACK"),
        "{err}"
    );
}

proptest! {
    #[test]
    fn the_header_parser_never_panics_and_names_the_header(raw in ".{0,200}") {
        if let Err(err) = SignatureHeader::parse(&raw) {
            prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
            prop_assert_eq!(err.field(), Some(SIGNATURE_HEADER));
        }
    }

    #[test]
    fn near_miss_headers_are_refused_with_typed_errors(
        t in "[0-9a-z-]{0,14}",
        s in "[0-9a-fA-Fxz]{0,70}",
        extra in "(&[a-z]{0,3}=?[a-z0-9]{0,3}){0,3}",
    ) {
        let keys = SigningKeys::new(KEY);
        let raw = format!("t={t}&s={s}{extra}");
        match keys.verify_at(Some(&raw), BODY.as_bytes(), T) {
            Ok(_) => prop_assert!(s.eq_ignore_ascii_case(SIGNATURE) && t == T.to_string()),
            Err(err) => {
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                prop_assert_eq!(err.field(), Some(SIGNATURE_HEADER));
            }
        }
    }
}

fn key_part() -> impl Strategy<Value = String> {
    "[0-9a-f]{2,64}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_signed_body_verifies_exactly_within_five_minutes_either_way(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        part in key_part(),
        t in 0i64..100_000_000_000,
        skew in -1_000i64..1_000,
    ) {
        let keys = SigningKeys::new(format!("signkey-prod-{part}"));
        let raw = keys.primary().header_value(&body, t);
        let outcome = keys.verify_at(Some(&raw), &body, t + skew);
        if skew.abs() <= 300 {
            prop_assert_eq!(outcome.map(SigningKey::variable).ok(), Some(SIGNING_KEY_VAR));
        } else {
            let err = outcome.unwrap_err();
            prop_assert_eq!(err.field(), Some(SIGNATURE_HEADER));
            let age = skew.to_string();
            prop_assert_eq!(err.context("age_seconds"), Some(age.as_str()));
        }
    }

    #[test]
    fn any_change_to_a_signed_body_is_refused(
        body in proptest::collection::vec(any::<u8>(), 1..300),
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let keys = SigningKeys::new(KEY).with_fallback("signkey-prod-abcdef");
        let raw = keys.primary().header_value(&body, T);
        let mut tampered = body.clone();
        tampered[flip.index(body.len())] ^= 1 << bit;
        let err = keys.verify_at(Some(&raw), &tampered, T).unwrap_err();
        prop_assert_eq!(err.field(), Some(SIGNATURE_HEADER));
        prop_assert!(err.to_string().contains(SIGNING_KEY_FALLBACK_VAR), "{err}");
        // Signed with the fallback, it verifies and says which key matched.
        let raw = keys.fallback().unwrap().header_value(&body, T);
        prop_assert_eq!(
            keys.verify_at(Some(&raw), &body, T).map(SigningKey::variable).ok(),
            Some(SIGNING_KEY_FALLBACK_VAR)
        );
    }

    #[test]
    fn any_clock_and_any_header_give_an_answer(
        now in any::<i64>(),
        t in "[0-9]{1,12}",
        raw_tail in ".{0,80}",
    ) {
        let keys = SigningKeys::new(KEY);
        let raw = format!("t={t}&s={SIGNATURE}{raw_tail}");
        if let Err(err) = keys.verify_at(Some(&raw), BODY.as_bytes(), now) {
            prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
            prop_assert_eq!(err.field(), Some(SIGNATURE_HEADER));
        }
        let missing = keys.verify_at(None, BODY.as_bytes(), now).unwrap_err();
        prop_assert_eq!(missing.field(), Some(SIGNATURE_HEADER));
    }

    #[test]
    fn any_configured_key_hashes_or_names_its_variable(key in prop_oneof![
        ".{0,40}",
        "signkey-[a-z_]{0,6}-[0-9a-fA-Fxz]{0,20}",
        " ?signkey-prod-[0-9a-f]{0,16} ?",
    ]) {
        let keys = SigningKeys::new(key.clone()).with_fallback(key.clone());
        for signing_key in [keys.primary(), keys.fallback().unwrap()] {
            // Signing works for any key and verifies under it; hashing needs hex after the
            // prefix.
            let raw = signing_key.header_value(BODY.as_bytes(), T);
            prop_assert!(keys.verify_at(Some(&raw), BODY.as_bytes(), T).is_ok());
            match signing_key.hashed() {
                Ok(token) => {
                    // The key's own `signkey-<env>-` prefix, then SHA-256 in hex.
                    let token = token.expose();
                    let (prefix, digest) = token.split_at(token.len() - 64);
                    prop_assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
                    prop_assert!(key.trim().starts_with(prefix), "{prefix}");
                }
                Err(err) => {
                    prop_assert_eq!(err.kind(), ErrorKind::Config);
                    prop_assert_eq!(err.variable(), Some(signing_key.variable()));
                }
            }
        }
    }
}
