//! The `Cache` conformance suite.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::unique_key;
use crate::{Cache, CacheExt, ErrorKind};

/// Runs every case in order.
pub async fn run_all(cache: Arc<dyn Cache>) {
    let c = cache.as_ref();
    missing_key(c).await;
    set_then_get(c).await;
    overwrite(c).await;
    ttl_expiry(c).await;
    get_many_keeps_order(c).await;
    set_many_then_get(c).await;
    delete_prefix_removes_only_prefix(c).await;
    invalid_input_is_refused(c).await;
    json_round_trip_and_decode_error(c).await;
}

/// Absent keys read as `None` everywhere.
pub async fn missing_key(cache: &dyn Cache) {
    let key = unique_key("missing");
    assert_eq!(
        cache.get(&key).await.expect("get"),
        None,
        "get of a missing key"
    );
    assert!(
        !cache.exists(&key).await.expect("exists"),
        "exists of a missing key"
    );
    assert_eq!(
        cache.ttl(&key).await.expect("ttl"),
        None,
        "ttl of a missing key"
    );
    assert!(
        !cache.delete(&key).await.expect("delete"),
        "delete of a missing key"
    );
}

/// A value reads back byte for byte, binary and empty values included.
pub async fn set_then_get(cache: &dyn Cache) {
    let key = unique_key("set");
    let value: Vec<u8> = (0..=255u8).collect();
    cache
        .set(&key, &value, Duration::from_secs(30))
        .await
        .expect("set");
    assert_eq!(
        cache.get(&key).await.expect("get").as_deref(),
        Some(&value[..])
    );
    assert!(cache.exists(&key).await.expect("exists"));

    let empty = unique_key("empty");
    cache
        .set(&empty, b"", Duration::from_secs(30))
        .await
        .expect("set empty");
    assert_eq!(
        cache.get(&empty).await.expect("get empty"),
        Some(Vec::new())
    );

    assert!(cache.delete(&key).await.expect("delete"));
    assert!(cache.delete(&empty).await.expect("delete empty"));
    assert_eq!(cache.get(&key).await.expect("get after delete"), None);
}

/// A second set replaces the value and the TTL.
pub async fn overwrite(cache: &dyn Cache) {
    let key = unique_key("overwrite");
    cache
        .set(&key, b"first", Duration::from_secs(300))
        .await
        .expect("set 1");
    cache
        .set(&key, b"second", Duration::from_secs(20))
        .await
        .expect("set 2");
    assert_eq!(
        cache.get(&key).await.expect("get").as_deref(),
        Some(&b"second"[..])
    );
    let ttl = cache
        .ttl(&key)
        .await
        .expect("ttl")
        .expect("live key has a ttl");
    assert!(
        ttl <= Duration::from_secs(20),
        "the TTL was replaced: {ttl:?}"
    );
    assert!(
        ttl > Duration::from_secs(15),
        "the TTL is close to the new one: {ttl:?}"
    );
    cache.delete(&key).await.expect("delete");
}

/// An entry is gone once its TTL has passed, and `ttl` counts down before that.
pub async fn ttl_expiry(cache: &dyn Cache) {
    let key = unique_key("ttl");
    let ttl = Duration::from_millis(600);
    cache.set(&key, b"short-lived", ttl).await.expect("set");
    let left = cache
        .ttl(&key)
        .await
        .expect("ttl")
        .expect("live key has a ttl");
    assert!(
        left <= ttl && left > Duration::ZERO,
        "remaining ttl {left:?} within (0, {ttl:?}]"
    );
    assert!(cache.exists(&key).await.expect("exists"));
    tokio::time::sleep(ttl + Duration::from_millis(400)).await;
    assert_eq!(
        cache.get(&key).await.expect("get"),
        None,
        "expired entry must be gone"
    );
    assert!(!cache.exists(&key).await.expect("exists"));
    assert_eq!(cache.ttl(&key).await.expect("ttl"), None);
}

/// `get_many` answers in the order asked, with `None` for the missing.
pub async fn get_many_keeps_order(cache: &dyn Cache) {
    let keys: Vec<String> = (0..3).map(|i| unique_key(&format!("many{i}"))).collect();
    for (i, key) in keys.iter().enumerate() {
        cache
            .set(key, format!("v{i}").as_bytes(), Duration::from_secs(30))
            .await
            .expect("set");
    }
    let missing = unique_key("many-missing");
    let asked = [&keys[2], &missing, &keys[0], &keys[1], &keys[2]].map(String::clone);
    let got = cache.get_many(&asked).await.expect("get_many");
    let got: Vec<Option<&[u8]>> = got.iter().map(|v| v.as_deref()).collect();
    assert_eq!(
        got,
        vec![
            Some(&b"v2"[..]),
            None,
            Some(&b"v0"[..]),
            Some(&b"v1"[..]),
            Some(&b"v2"[..])
        ]
    );
    assert_eq!(
        cache.get_many(&[]).await.expect("empty get_many"),
        Vec::<Option<Vec<u8>>>::new()
    );
    for key in &keys {
        cache.delete(key).await.expect("delete");
    }
}

/// `set_many` writes every pair with the TTL.
pub async fn set_many_then_get(cache: &dyn Cache) {
    let a = unique_key("setmany-a");
    let b = unique_key("setmany-b");
    cache
        .set_many(
            vec![(a.clone(), b"A".to_vec()), (b.clone(), b"B".to_vec())],
            Duration::from_secs(30),
        )
        .await
        .expect("set_many");
    assert_eq!(
        cache.get(&a).await.expect("get a").as_deref(),
        Some(&b"A"[..])
    );
    assert_eq!(
        cache.get(&b).await.expect("get b").as_deref(),
        Some(&b"B"[..])
    );
    let ttl = cache.ttl(&b).await.expect("ttl").expect("ttl set");
    assert!(
        ttl <= Duration::from_secs(30) && ttl > Duration::from_secs(25),
        "{ttl:?}"
    );
    cache
        .set_many(Vec::new(), Duration::from_secs(1))
        .await
        .expect("empty set_many");
    cache.delete(&a).await.expect("delete");
    cache.delete(&b).await.expect("delete");
}

/// `delete_prefix` removes every key under the prefix (more than one scan page's worth) and
/// nothing else.
pub async fn delete_prefix_removes_only_prefix(cache: &dyn Cache) {
    let prefix = format!("{}:", unique_key("prefix"));
    let keep = unique_key("prefix-keep");
    let under: Vec<String> = (0..250).map(|i| format!("{prefix}{i}")).collect();
    let pairs: Vec<(String, Vec<u8>)> = under.iter().map(|k| (k.clone(), b"x".to_vec())).collect();
    cache
        .set_many(pairs, Duration::from_secs(60))
        .await
        .expect("set_many");
    cache
        .set(&keep, b"keep", Duration::from_secs(60))
        .await
        .expect("set keep");
    // A key that merely shares the prefix's beginning without its separator survives too.
    let sibling = prefix.trim_end_matches(':').to_string() + "x";
    cache
        .set(&sibling, b"sibling", Duration::from_secs(60))
        .await
        .expect("set sibling");

    let removed = cache.delete_prefix(&prefix).await.expect("delete_prefix");
    assert_eq!(removed, 250, "every key under the prefix is removed");
    assert!(!cache.exists(&under[0]).await.expect("exists"));
    assert!(!cache.exists(&under[249]).await.expect("exists"));
    assert!(
        cache.exists(&keep).await.expect("exists"),
        "keys outside the prefix survive"
    );
    assert!(
        cache.exists(&sibling).await.expect("exists"),
        "sibling survives"
    );
    assert_eq!(cache.delete_prefix(&prefix).await.expect("again"), 0);
    cache.delete(&keep).await.expect("delete");
    cache.delete(&sibling).await.expect("delete");
}

/// Bad input is an `InvalidInput` error naming the field, and writes nothing.
pub async fn invalid_input_is_refused(cache: &dyn Cache) {
    let err = cache.get("").await.expect_err("empty key");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("key"));

    let err = cache
        .set("", b"v", Duration::from_secs(1))
        .await
        .expect_err("empty key");
    assert_eq!(err.field(), Some("key"));

    let key = unique_key("invalid");
    let err = cache
        .set(&key, b"v", Duration::ZERO)
        .await
        .expect_err("zero ttl");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("ttl"));
    assert!(
        !cache.exists(&key).await.expect("exists"),
        "a refused write stores nothing"
    );

    let long = "k".repeat(64 * 1024);
    let err = cache
        .set(&long, b"v", Duration::from_secs(1))
        .await
        .expect_err("long key");
    assert_eq!(err.field(), Some("key"));

    let err = cache.delete_prefix("").await.expect_err("empty prefix");
    assert_eq!(err.field(), Some("prefix"));

    let err = cache
        .set_many(
            vec![(key.clone(), b"v".to_vec()), (String::new(), b"v".to_vec())],
            Duration::from_secs(1),
        )
        .await
        .expect_err("one bad key in a batch");
    assert_eq!(err.field(), Some("key"));
    assert!(
        !cache.exists(&key).await.expect("exists"),
        "a refused batch stores nothing"
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Preferences {
    timezone: String,
    work_days: Vec<u8>,
}

/// Typed JSON round trip; a value of another shape is a decode error naming its key and
/// leaves other keys alone.
pub async fn json_round_trip_and_decode_error(cache: &dyn Cache) {
    let key = unique_key("json");
    let other = unique_key("json-other");
    let prefs = Preferences {
        timezone: "Europe/Paris".into(),
        work_days: vec![1, 2, 3, 4, 5],
    };
    cache
        .set_json(&key, &prefs, Duration::from_secs(30))
        .await
        .expect("set_json");
    cache
        .set_json(&other, &7u32, Duration::from_secs(30))
        .await
        .expect("set_json other");
    assert_eq!(
        cache.get_json::<Preferences>(&key).await.expect("get_json"),
        Some(prefs)
    );

    let err = cache
        .get_json::<Preferences>(&other)
        .await
        .expect_err("wrong shape");
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert_eq!(err.context("key"), Some(other.as_str()));
    assert_eq!(
        cache.get_json::<u32>(&other).await.expect("other intact"),
        Some(7)
    );

    let loaded = cache
        .get_or_set_json(&other, Duration::from_secs(30), || async {
            Ok(Preferences {
                timezone: "UTC".into(),
                work_days: vec![],
            })
        })
        .await
        .expect("get_or_set replaces an undecodable value");
    assert_eq!(loaded.timezone, "UTC");
    cache.delete(&key).await.expect("delete");
    cache.delete(&other).await.expect("delete");
}
