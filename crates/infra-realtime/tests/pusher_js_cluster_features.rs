//! pusher-js against a two-node cluster (two `infra-realtime-server` processes sharing the
//! local Redis under a key prefix of their own) for the features that span nodes: subscription
//! counts (with their webhook, verified by the official `pusher` npm SDK's `webhook()`).
//!
//! Needs Node, `npm ci` in `tests/compat` (`cargo xtask ci` does it) and the local Redis;
//! fails, never skips, without them.
#![cfg(all(feature = "server-redis", feature = "pusher", unix))]

mod server_support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use server_support::webhook_receiver::Receiver;
use server_support::*;

fn compat() -> PathBuf {
    let compat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    for package in ["pusher-js", "pusher"] {
        assert!(
            compat.join("node_modules").join(package).exists(),
            "run `npm ci` in {} first (cargo xtask ci does)",
            compat.display()
        );
    }
    compat
}

async fn redis_is_there() {
    // A node without Redis serves alone: make sure there is one to share.
    redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the local Redis on 127.0.0.1:6379 (cargo xtask services starts it)");
}

/// Two nodes sharing `prefix`, with `extra` settings on both.
fn two_nodes(prefix: &Prefix, extra: &[(&'static str, String)]) -> [ServerProcess; 2] {
    ["n1", "n2"].map(|node| {
        let mut env = vec![
            ("INFRA_REALTIME_REDIS_URL", REDIS_URL.to_owned()),
            ("INFRA_REALTIME_REDIS_PREFIX", prefix.to_string()),
            ("INFRA_REALTIME_NODE_ID", node.to_owned()),
        ];
        env.extend_from_slice(extra);
        ServerProcess::start_with(free_port(), &env)
    })
}

/// Runs a compat script against the two nodes; its `RESULT`.
async fn run_script(script: &str, nodes: &[ServerProcess; 2]) -> Value {
    let mut child = Command::new("node")
        .arg(compat().join(script))
        .arg(nodes[0].addr.port().to_string())
        .arg(nodes[1].addr.port().to_string())
        .current_dir(compat())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let (status, result) = tokio::task::spawn_blocking(move || {
        let result = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("RESULT ").map(str::to_owned));
        (child.wait().unwrap(), result)
    })
    .await
    .unwrap();
    let result: Value =
        serde_json::from_str(&result.expect("the script printed a RESULT")).unwrap();
    assert!(status.success(), "{script}: {result}");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_hears_subscription_counts_across_the_cluster() {
    redis_is_there().await;
    let mut receiver = Receiver::start().await;
    let prefix = unique_prefix("subscription-count");
    let nodes = two_nodes(
        &prefix,
        &[
            ("INFRA_REALTIME_SUBSCRIPTION_COUNT", "true".into()),
            ("INFRA_REALTIME_SUBSCRIPTION_COUNT_INTERVAL", "100ms".into()),
            (
                "INFRA_REALTIME_WEBHOOK_URL",
                receiver.url("/hooks").to_string(),
            ),
            ("INFRA_REALTIME_WEBHOOK_EVENTS", "subscription_count".into()),
        ],
    );
    let result = run_script("pusher_js_subscription_count.js", &nodes).await;
    // a (node 1) heard 1, then 2 as b joined on node 2, then 1 as b left; counts within one
    // interval are sent as one, so a hears no other value.
    let a_counts: Vec<u64> = serde_json::from_value(result["a_counts"].clone()).unwrap();
    assert_eq!(a_counts.first(), Some(&1), "{result}");
    assert_eq!(a_counts.last(), Some(&1), "{result}");
    assert!(a_counts.contains(&2), "{result}");
    assert!(a_counts.iter().all(|n| [1, 2].contains(n)), "{result}");
    assert_eq!(
        result["b_counts"].as_array().unwrap().last(),
        Some(&json!(2))
    );
    assert_eq!(result["a_channel_count"], 1);

    // The webhook heard the counts too, and nothing else (the filter).
    let mut counts = Vec::new();
    while counts.last() != Some(&0) {
        let line = receiver.line().await;
        let events: Vec<Value> =
            serde_json::from_str(line.strip_prefix("EVENTS ").expect("a valid delivery")).unwrap();
        for event in events {
            assert_eq!(
                (event["name"].as_str(), event["channel"].as_str()),
                (Some("subscription_count"), Some("room"))
            );
            counts.push(event["subscription_count"].as_u64().unwrap());
        }
    }
    assert!(counts.contains(&2), "{counts:?}");
}
