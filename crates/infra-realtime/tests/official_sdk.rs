//! Compatibility with the official `pusher` Node SDK: requests it signs pass our verifier, and
//! the authorizations and webhook signatures we make match and satisfy it, and encrypted
//! channels agree both ways (same shared secret; each side opens what the other sealed).
//!
//! Needs Node and `npm ci` in `tests/compat` (`.ci/run` does it); fails, never skips, without.

mod support;

use std::path::PathBuf;
use std::process::Command;

use infra_core::{ChannelName, Secret};
use infra_realtime::{AppCredentials, EncryptedPayload, EncryptionMasterKey, signature};
use serde_json::Value;
use support::{KEY, SECRET, pusher_api};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_and_our_signatures_agree() {
    let compat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    assert!(
        compat.join("node_modules/pusher").exists(),
        "run `npm ci` in {} first (.ci/run does)",
        compat.display()
    );
    let (base, log) = pusher_api().await;
    let port = base.port().unwrap();

    let secret = Secret::new(SECRET.to_owned());
    let webhook_body = r#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
    let webhook_signature = infra_core::hmac_sha256_hex(&secret, webhook_body.as_bytes());

    // A master key as `PUSHER_ENCRYPTION_MASTER_KEY` holds it (base64 of 32 bytes).
    let master_key_base64 = "VGhpcyBpcyBhIHN0cmluZyB0aGF0IGlzIDMyIGNocnM=";
    let master = EncryptionMasterKey::from_base64(master_key_base64).unwrap();
    let encrypted_channel = ChannelName::new("private-encrypted-calendar-7").unwrap();
    let our_secret = master.shared_secret(&encrypted_channel).unwrap();
    let sealed_by_us =
        serde_json::to_string(&our_secret.encrypt(br#"{"moved":true}"#).unwrap()).unwrap();

    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(compat.join("pusher_sdk.js"))
            .arg(port.to_string())
            .arg(webhook_body)
            .arg(&webhook_signature)
            .arg(master_key_base64)
            .arg(&sealed_by_us)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sdk failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sdk: Value = serde_json::from_str(stdout.trim()).unwrap();

    // Requests signed by the SDK pass our verifier.
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(log.iter().all(|seen| seen.verdict.is_ok()), "{log:?}");
    let paths: Vec<&str> = log.iter().map(|seen| seen.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/apps/3/events",
            "/apps/3/batch_events",
            "/apps/3/channels",
            "/apps/3/events"
        ]
    );
    // The SDK's trigger body has the shape our client sends.
    assert_eq!(
        log[0].body,
        serde_json::json!({"name": "meeting.moved", "data": "{\"id\":9}", "channels": ["private-a", "b"]})
    );
    assert_eq!(
        (
            sdk["trigger"].as_u64(),
            sdk["batch"].as_u64(),
            sdk["channels"].as_u64()
        ),
        (Some(200), Some(200), Some(200))
    );

    // Authorizations we sign equal the SDK's.
    let private = signature::authorize_channel(
        KEY,
        &secret,
        "1234.1234",
        &ChannelName::new("private-foobar").unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(sdk["private_auth"], serde_json::to_value(&private).unwrap());
    let presence_data = sdk["presence_auth"]["channel_data"].as_str().unwrap();
    let presence = signature::authorize_channel(
        KEY,
        &secret,
        "1234.1234",
        &ChannelName::new("presence-foobar").unwrap(),
        Some(presence_data),
    )
    .unwrap();
    assert_eq!(
        sdk["presence_auth"],
        serde_json::to_value(&presence).unwrap()
    );
    let user = signature::authenticate_user(
        KEY,
        &secret,
        "1234.1234",
        sdk["user_auth"]["user_data"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(sdk["user_auth"], serde_json::to_value(&user).unwrap());

    // A webhook signed by us is valid for the SDK.
    assert_eq!(sdk["webhook_valid"], true);

    // Encrypted channels: the SDK and we derive the same shared secret and sign the same
    // authorization for the same master key and channel …
    let ours = AppCredentials::new("3", KEY, SECRET)
        .with_encryption_master_key(master)
        .authorize_channel("1234.1234", &encrypted_channel, None)
        .unwrap();
    assert_eq!(sdk["encrypted_auth"], serde_json::to_value(&ours).unwrap());
    assert_eq!(
        sdk["encrypted_auth"]["shared_secret"].as_str(),
        Some(our_secret.to_base64().as_str())
    );
    // … the event the SDK sealed opens with our secret …
    assert_eq!(sdk["encrypted_trigger"].as_u64(), Some(200));
    assert_eq!(
        log[3].body["channels"],
        serde_json::json!([encrypted_channel.as_str()])
    );
    let sealed_by_sdk: EncryptedPayload =
        serde_json::from_str(log[3].body["data"].as_str().unwrap()).unwrap();
    assert_eq!(our_secret.decrypt(&sealed_by_sdk).unwrap(), br#"{"id":9}"#);
    // … and what we sealed opens with the SDK's.
    assert_eq!(sdk["opened_ours"].as_str(), Some(r#"{"moved":true}"#));
}
