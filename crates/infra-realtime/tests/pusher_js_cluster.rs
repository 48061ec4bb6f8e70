//! The official clients against a two-node cluster: two `infra-realtime-server` processes on
//! their own ports share the local Redis (127.0.0.1:6379) under a key prefix of their own.
//! pusher-js `a` is on node 1, pusher-js `b` on node 2: presence spans the nodes, an event the
//! official `pusher` SDK triggers on node 1 and a client event `a` sends reach `b`, node 2's
//! HTTP API counts both members, and when node 2 is killed `a` hears `b` leave.
//!
//! Needs Node, `npm ci` in `tests/compat` (`cargo xtask ci` does it) and the local Redis;
//! fails, never skips, without them.
#![cfg(all(feature = "server-redis", feature = "pusher", unix))]

mod server_support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use infra_core::ChannelName;
use infra_realtime::{ChannelAttribute, ChannelsQuery, PusherClient, PusherConfig};
use serde_json::{Value, json};
use server_support::*;

/// Short, so node 2's death is noticed soon; the waits stay bounded by generous deadlines.
const LEASE: &str = "1s";
const ROOM: &str = "presence-room";

/// The Node script, killed (by its own handle) if the test fails before it exits.
struct NodeScript(Child);

impl Drop for NodeScript {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn node_env(prefix: &Prefix, node: &str) -> Vec<(&'static str, String)> {
    vec![
        ("INFRA_REALTIME_REDIS_URL", REDIS_URL.to_owned()),
        ("INFRA_REALTIME_REDIS_PREFIX", prefix.to_string()),
        ("INFRA_REALTIME_NODE_ID", node.to_owned()),
        ("INFRA_REALTIME_NODE_LEASE", LEASE.to_owned()),
    ]
}

fn api(addr: std::net::SocketAddr) -> PusherClient {
    let base = url::Url::parse(&format!("http://{addr}")).unwrap();
    PusherClient::new(PusherConfig::new(base, APP_ID, KEY, SECRET)).unwrap()
}

async fn keys_under(prefix: &Prefix) -> Vec<String> {
    Backend::single().keys_under(prefix).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_works_against_a_two_node_cluster() {
    let compat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    for package in ["pusher-js", "pusher"] {
        assert!(
            compat.join("node_modules").join(package).exists(),
            "run `npm ci` in {} first (cargo xtask ci does)",
            compat.display()
        );
    }
    // A node without Redis serves alone: make sure there is one to share.
    redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the local Redis on 127.0.0.1:6379 (cargo xtask services starts it)");

    let prefix = unique_prefix("pusher-js-cluster");
    let node1 = ServerProcess::start_with(free_port(), &node_env(&prefix, "js1"));
    let mut node2 = Some(ServerProcess::start_with(
        free_port(),
        &node_env(&prefix, "js2"),
    ));
    let api1 = api(node1.addr);
    let api2 = api(node2.as_ref().unwrap().addr);
    let room = ChannelName::new(ROOM).unwrap();

    let mut script = NodeScript(
        Command::new("node")
            .arg(compat.join("pusher_js_cluster.js"))
            .arg(node1.addr.port().to_string())
            .arg(node2.as_ref().unwrap().addr.port().to_string())
            .current_dir(&compat)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs"),
    );
    let mut stdin = script.0.stdin.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = script.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let mut seen_by_node2 = None;
    let mut seen_by_node1 = None;
    let result: Value = loop {
        // Longer than any wait of the script's own, so it reports what it was waiting for.
        let line = tokio::time::timeout(PATIENCE * 6, rx.recv())
            .await
            .expect("pusher-js reports within the deadline")
            .expect("pusher-js script ended without a result");
        match line.as_str() {
            "STEP channels" => {
                // `GET /channels` and `GET /channels/{name}` on node 2 count a (node 1) too.
                let listed = api2
                    .channels(
                        &ChannelsQuery::with_prefix("presence-")
                            .with_info(ChannelAttribute::UserCount),
                    )
                    .await
                    .unwrap();
                let stats = api2
                    .channel(
                        &room,
                        &[
                            ChannelAttribute::UserCount,
                            ChannelAttribute::SubscriptionCount,
                        ],
                    )
                    .await
                    .unwrap();
                let mut users: Vec<String> = api2
                    .presence_users(&room)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|u| u.id)
                    .collect();
                users.sort();
                seen_by_node2 = Some((
                    listed
                        .channels
                        .iter()
                        .map(|(name, info)| (name.clone(), info.user_count))
                        .collect::<Vec<_>>(),
                    stats.occupied,
                    stats.user_count,
                    stats.subscription_count,
                    users,
                ));
            }
            "STEP survivor" => {
                let stats = api1
                    .channel(&room, &[ChannelAttribute::UserCount])
                    .await
                    .unwrap();
                let users: Vec<String> = api1
                    .presence_users(&room)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|u| u.id)
                    .collect();
                seen_by_node1 = Some((stats.occupied, stats.user_count, users));
            }
            "STEP kill" => {
                let node2 = node2.take().unwrap();
                tokio::task::spawn_blocking(move || node2.kill())
                    .await
                    .unwrap();
            }
            other => {
                if let Some(json) = other.strip_prefix("RESULT ") {
                    break serde_json::from_str(json).unwrap();
                }
                continue;
            }
        }
        writeln!(stdin, "go").unwrap();
    };
    let status = script.0.wait().unwrap();
    assert!(status.success(), "{result}");

    // Presence spans the nodes: each client sees the other.
    assert_eq!(result["a_members_at_join"], json!(["a"]));
    assert_eq!(
        (&result["b_me"], &result["b_count"], &result["b_members"]),
        (&json!("b"), &json!(2), &json!(["a", "b"]))
    );
    assert_eq!(
        result["a_member_added"],
        json!({"id": "b", "info": {"name": "user b"}})
    );
    assert_eq!(
        (&result["a_count"], &result["a_members"]),
        (&json!(2), &json!(["a", "b"]))
    );
    // The official SDK's trigger on node 1 reaches b on node 2.
    assert_eq!(result["sdk_status"], 200);
    assert_eq!(result["from_sdk_on_2"], json!({"n": 1}));
    // a's client event on node 1 reaches b on node 2, as a's, and is not echoed to a.
    assert_eq!(result["client_event_sent"], true);
    assert_eq!(result["client_event"], json!({"hi": "from a"}));
    assert_eq!(result["client_event_user"], "a");
    assert_eq!(result["client_event_echoed"], false);
    // Node 2's HTTP API answers for the whole cluster.
    let (listed, occupied, user_count, subscription_count, users) =
        seen_by_node2.expect("the script asked for the channel's stats");
    assert_eq!(listed, vec![(ROOM.to_owned(), Some(2))]);
    assert!(occupied);
    assert_eq!((user_count, subscription_count), (Some(2), Some(2)));
    assert_eq!(users, ["a", "b"]);
    // Node 2 killed: a hears b leave, and node 1 still serves it.
    assert_eq!(result["a_member_removed"], "b");
    assert_eq!(
        (&result["a_count_after"], &result["a_members_after"]),
        (&json!(1), &json!(["a"]))
    );
    assert_eq!(result["after_kill"], json!({"n": 2}));
    assert_eq!(
        seen_by_node1.expect("the script asked who is left"),
        (true, Some(1), vec!["a".to_owned()])
    );

    // Node 1, stopped gracefully once its client is gone, leaves nothing behind (node 2's
    // state was reaped when its lease ran out).
    let stopped = tokio::task::spawn_blocking(move || node1.terminate());
    assert!(stopped.await.unwrap());
    assert_eq!(keys_under(&prefix).await, Vec::<String>::new());
}
