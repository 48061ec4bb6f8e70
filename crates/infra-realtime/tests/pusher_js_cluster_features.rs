//! pusher-js against a two-node cluster (two `infra-realtime-server` processes sharing the
//! local Redis under a key prefix of their own) for the features that span nodes: subscription
//! counts (with their webhook, verified by the official `pusher` npm SDK's `webhook()`) and the
//! last event of cache channels, kept in Redis, and watchlist events; and the same watchlist
//! and count scripts against one node alone.
//!
//! Needs Node, `npm ci` in `tests/compat` (`cargo xtask ci` does it) and the local Redis;
//! fails, never skips, without them.
#![cfg(all(feature = "server-redis", feature = "pusher", unix))]

mod server_support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::sync::{Arc, Mutex};

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

fn node_env(
    prefix: &Prefix,
    node: &str,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("INFRA_REALTIME_REDIS_URL", REDIS_URL.to_owned()),
        ("INFRA_REALTIME_REDIS_PREFIX", prefix.to_string()),
        ("INFRA_REALTIME_NODE_ID", node.to_owned()),
    ];
    env.extend_from_slice(extra);
    env
}

/// Two nodes sharing `prefix`, with `extra` settings on both.
fn two_nodes(prefix: &Prefix, extra: &[(&'static str, String)]) -> [ServerProcess; 2] {
    ["n1", "n2"].map(|node| ServerProcess::start_with(free_port(), &node_env(prefix, node, extra)))
}

/// Runs a compat script against nodes on `ports`; `on_step` answers each `STEP <name>` it
/// prints (then the script goes on). Its `RESULT`.
async fn run_script(
    script: &str,
    ports: [u16; 2],
    mut on_step: impl FnMut(&str) + Send + 'static,
) -> Value {
    use std::io::Write;
    let mut child = Command::new("node")
        .arg(compat().join(script))
        .arg(ports[0].to_string())
        .arg(ports[1].to_string())
        .current_dir(compat())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (status, result) = tokio::task::spawn_blocking(move || {
        let mut result = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(name) = line.strip_prefix("STEP ") {
                on_step(name);
                writeln!(stdin, "go").unwrap();
            } else if let Some(json) = line.strip_prefix("RESULT ") {
                result = Some(json.to_owned());
                break;
            }
        }
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
    let ports = [nodes[0].addr.port(), nodes[1].addr.port()];
    let result = run_script("pusher_js_subscription_count.js", ports, |_| {}).await;
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

    // The webhook heard the counts too (from the node of each change, so in no set order
    // across nodes), down to 0 once both left, and nothing else (the filter).
    let mut counts = Vec::new();
    while !(counts.contains(&2) && counts.contains(&0)) {
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
    assert!(counts.iter().all(|n| [0, 1, 2].contains(n)), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_channel_s_event_reaches_a_subscriber_on_a_node_started_later() {
    redis_is_there().await;
    let mut receiver = Receiver::start().await;
    let prefix = unique_prefix("cache-channel");
    let extra = [
        (
            "INFRA_REALTIME_WEBHOOK_URL",
            receiver.url("/hooks").to_string(),
        ),
        ("INFRA_REALTIME_WEBHOOK_EVENTS", "cache_miss".into()),
    ];
    let node1 = ServerProcess::start_with(free_port(), &node_env(&prefix, "n1", &extra));
    let port2 = free_port();
    // Node 2 starts only once the event was triggered through node 1: it never saw it pass.
    let node2: Arc<Mutex<Option<ServerProcess>>> = Arc::default();
    let starter = node2.clone();
    let env2 = node_env(&prefix, "n2", &extra);
    let result = run_script(
        "pusher_js_cache_channel.js",
        [node1.addr.port(), port2],
        move |step| {
            assert_eq!(step, "start-node-2");
            *starter.lock().unwrap() = Some(ServerProcess::start_with(port2, &env2));
        },
    )
    .await;
    assert!(node2.lock().unwrap().is_some());
    assert_eq!(result["trigger_status"], 200);
    assert_eq!(
        result["cached"],
        json!({"event": "headline", "data": {"n": 1}})
    );
    assert_eq!(result["empty"]["event"], "pusher:cache_miss");

    // The miss went to the webhook (node 2 sent it), and nothing else did (the filter).
    let line = receiver.line().await;
    let events: Vec<Value> =
        serde_json::from_str(line.strip_prefix("EVENTS ").expect("a valid delivery")).unwrap();
    assert_eq!(
        events,
        [json!({"name": "cache_miss", "channel": "cache-empty"})]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_watchlist_hears_a_user_with_two_tabs_once() {
    redis_is_there().await;
    let prefix = unique_prefix("watchlist");
    let nodes = two_nodes(
        &prefix,
        &[("INFRA_REALTIME_WATCHLIST_EVENTS", "true".into())],
    );
    let ports = [nodes[0].addr.port(), nodes[1].addr.port()];
    let result = run_script("pusher_js_watchlist.js", ports, |_| {}).await;
    // x had a tab on each node: online once when the first opened, offline once when the
    // last closed, whichever node each was on.
    assert_eq!(
        (&result["x_online"], &result["x_offline"]),
        (&json!(1), &json!(1)),
        "{result}"
    );
    // y was online before w signed in: w heard it at sign-in or as it came online (both, when
    // y's sign-in was still on its way to Redis as w signed in).
    assert!(result["y_online"].as_u64().unwrap() >= 1, "{result}");
}

/// The same scripts against a single node (its own memory, no Redis): both clients on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_sends_watchlist_events_and_subscription_counts_too() {
    let node = ServerProcess::start_with(
        free_port(),
        &[
            ("INFRA_REALTIME_WATCHLIST_EVENTS", "true".into()),
            ("INFRA_REALTIME_SUBSCRIPTION_COUNT", "true".into()),
            ("INFRA_REALTIME_SUBSCRIPTION_COUNT_INTERVAL", "100ms".into()),
        ],
    );
    let port = node.addr.port();
    let watchlist = run_script("pusher_js_watchlist.js", [port, port], |_| {}).await;
    assert_eq!(
        (&watchlist["x_online"], &watchlist["x_offline"]),
        (&json!(1), &json!(1)),
        "{watchlist}"
    );
    let counts = run_script("pusher_js_subscription_count.js", [port, port], |_| {}).await;
    let a_counts: Vec<u64> = serde_json::from_value(counts["a_counts"].clone()).unwrap();
    assert_eq!(
        (a_counts.first(), a_counts.last()),
        (Some(&1), Some(&1)),
        "{counts}"
    );
    assert!(a_counts.contains(&2), "{counts}");
}
