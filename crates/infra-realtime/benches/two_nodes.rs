//! `cargo xtask bench realtime`, two nodes: one event fanned out to 1,000 subscribers spread
//! over two embedded server nodes that share Redis — the local server (127.0.0.1:6379, a key
//! prefix of the run's own) and then a local Redis Cluster of the run's own (three masters,
//! three replicas, `infra_core::testkit::redis_cluster`). Each round triggers on node 1
//! through its in-process handle: node 1's 500 subscribers get the frame directly, node 2's
//! through the bus (`PUBLISH` / sharded `SPUBLISH`). Latency is from the trigger to each
//! subscriber's read, over all 1,000; goal p99 ≤ 15 ms.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use infra_core::testkit::bench_report::{self, Goal, Row, Side};
use infra_core::testkit::redis_cluster::LocalRedisCluster;
use infra_core::{ChannelName, EventName, Realtime};
use infra_realtime::server::{AppConfig, AppLimits, ClusterConfig, RealtimeServer, ServerConfig};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "bench-key";
const SUBSCRIBERS: usize = 1_000;
const ROUNDS: usize = 200;

fn rounds() -> usize {
    if bench_report::quick() {
        ROUNDS / 10
    } else {
        ROUNDS
    }
}

struct Node {
    server: Arc<RealtimeServer>,
    addr: SocketAddr,
    serving: tokio::task::JoinHandle<()>,
}

async fn node(cluster: ClusterConfig, id: &str, prefix: &str) -> Node {
    let mut limits = AppLimits::default();
    limits.max_connections = 20_000;
    limits.max_connections_per_ip = 0;
    let config = ServerConfig::new(vec![
        AppConfig::new("1", KEY, "bench-secret").with_limits(limits),
    ])
    .with_cluster(Some(cluster.with_key_prefix(prefix).with_node_id(id)));
    let server = RealtimeServer::new(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    let serving = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    assert!(
        server.cluster_ready(Duration::from_secs(10)).await,
        "node {id} reaches Redis"
    );
    Node {
        server: Arc::new(server),
        addr,
        serving,
    }
}

/// The `t` of a tick frame (`\"t\":123` inside its data string), without a JSON parse.
fn send_time(frame: &str) -> Option<u64> {
    if !frame.contains(r#""event":"tick""#) {
        return None;
    }
    let start = frame.find(r#"\"t\":"#)? + r#"\"t\":"#.len();
    let digits: String = frame[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

async fn subscriber(
    addr: SocketAddr,
    base: Instant,
    latencies: mpsc::UnboundedSender<u64>,
) -> tokio::task::JoinHandle<()> {
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let url = format!("ws://{addr}/app/{KEY}?protocol=7");
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
        .await
        .expect("handshake");
    ws.next().await.unwrap().unwrap(); // connection_established
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": "bench"}});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    ws.next().await.unwrap().unwrap(); // subscription_succeeded
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            if let Some(sent) = send_time(&text) {
                let now = base.elapsed().as_micros() as u64;
                let _ = latencies.send(now.saturating_sub(sent));
            }
        }
    })
}

struct FanOut {
    p50_us: f64,
    p99_us: f64,
    msgs_per_sec: f64,
}

async fn two_nodes(cluster: ClusterConfig, prefix: &str) -> FanOut {
    let n1 = node(cluster.clone(), "bench-n1", prefix).await;
    let n2 = node(cluster, "bench-n2", prefix).await;
    let base = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..SUBSCRIBERS {
        let addr = if i % 2 == 0 { n1.addr } else { n2.addr };
        tasks.push(subscriber(addr, base, tx.clone()).await);
    }
    // Warm-up rounds until node 2's subscribers hear node 1 (the bus is up both ways).
    let channels = [ChannelName::new("bench").unwrap()];
    let event = EventName::new("tick").unwrap();
    let mut warm = 0;
    while warm < SUBSCRIBERS {
        n1.server
            .trigger(
                &channels,
                &event,
                &json!({"t": base.elapsed().as_micros() as u64}),
            )
            .await
            .unwrap();
        warm = 0;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            warm += 1;
        }
    }
    let mut all = Vec::with_capacity(rounds() * SUBSCRIBERS);
    let started = Instant::now();
    for _ in 0..rounds() {
        let t = base.elapsed().as_micros() as u64;
        n1.server
            .trigger(&channels, &event, &json!({"t": t}))
            .await
            .unwrap();
        for _ in 0..SUBSCRIBERS {
            let latency = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("every subscriber receives")
                .expect("open");
            all.push(latency);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for task in tasks {
        task.abort();
    }
    for node in [&n1, &n2] {
        let _ = node.server.shutdown(Duration::from_secs(5)).await;
        node.serving.abort();
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize] as f64;
    FanOut {
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        msgs_per_sec: all.len() as f64 / elapsed,
    }
}

fn report(over: &str, ours: &FanOut) {
    println!(
        "two nodes over {over}: 1 event to {SUBSCRIBERS} subscribers (half on each) x {}: p50 {:.0} µs, p99 {:.0} µs, {:.0} msgs/s (p99 goal <= 15 ms)",
        rounds(),
        ours.p50_us,
        ours.p99_us,
        ours.msgs_per_sec
    );
    Row::new(
        "infra-realtime",
        format!(
            "two nodes over {over}, 1 event to {SUBSCRIBERS} subscribers split over both x {}",
            rounds()
        ),
        "msgs/s",
    )
    .ours(
        Side::new(
            "infra-realtime, 2 embedded nodes (trigger on node 1)",
            ours.msgs_per_sec,
        )
        .with_latency(
            Duration::from_secs_f64(ours.p50_us / 1e6),
            Duration::from_secs_f64(ours.p99_us / 1e6),
        ),
    )
    .goal(Goal::p99_at_most(Duration::from_millis(15)))
    .emit()
    .expect("bench report written");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = format!("bench-two-nodes-{}", std::process::id());
    runtime.block_on(async {
        let single = ClusterConfig::new("redis://127.0.0.1:6379").unwrap();
        let fan_out = two_nodes(single, &prefix).await;
        report("one Redis", &fan_out);

        let cluster = LocalRedisCluster::builder()
            .start()
            .expect("a local Redis Cluster (redis-server and redis-cli >= 7)");
        let config = ClusterConfig::redis_cluster(cluster.urls()).unwrap();
        let fan_out = two_nodes(config, &prefix).await;
        report("Redis Cluster (3 masters)", &fan_out);
    });
}
