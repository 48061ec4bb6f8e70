//! `cargo xtask bench realtime`: the embedded server under load, beside a raw baseline.
//!
//! 1. Idle connections: the `infra-realtime-server` binary (a separate process, so only the
//!    server is measured) holds 100,000 WebSocket connections; RSS growth / connections.
//!    Goal ≤ 10 KiB per connection. One source address has about 28,000 ephemeral ports
//!    towards one server port, so the clients bind 127.0.0.2 … 127.0.0.5 in turn, 25,000
//!    connections each at 100,000 (every 127/8 address is loopback on Linux).
//! 2. Fan-out: one event to 1,000 subscribers, 200 rounds, and to 10,000 subscribers, 50
//!    rounds: delivery latency p50/p99 and messages/s — our server (triggered through the
//!    in-process handle) beside a raw tokio-tungstenite broadcast server (one
//!    `tokio::sync::broadcast`, a task per socket writing the shared frame) in the same
//!    process, same run, same clients. Goals: ≥ 0.7× the raw broadcast, p99 ≤ 10 ms at 1,000
//!    and ≤ 50 ms at 10,000.
//!
//! The open-file limit (soft and, when the process may, hard) is raised to what the run needs;
//! the server process inherits it. `INFRA_BENCH_IDLE_CONNECTIONS` overrides the 100,000 (a
//! shared, busy machine: prove the plumbing with fewer).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use infra_core::testkit::bench_report::{self, Goal, Row, Side};
use infra_core::{ChannelName, EventName, Realtime};
use infra_realtime::server::{AppConfig, AppLimits, RealtimeServer, ServerConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "bench-key";
const IDLE_CONNECTIONS: usize = 100_000;
/// Loopback source addresses the idle clients take in turn: 100,000 connections are 25,000 from
/// each, under one address's 28,231 ephemeral ports (the default range) towards one port.
const SOURCES: usize = 4;
/// (subscribers, rounds, p99 goal) of each fan-out row.
const FAN_OUTS: [(usize, usize, Duration); 2] = [
    (1_000, 200, Duration::from_millis(10)),
    (10_000, 50, Duration::from_millis(50)),
];

/// `cargo xtask bench --quick` proves the plumbing only: a tenth of the connections and rounds.
fn scaled(n: usize) -> usize {
    if bench_report::quick() { n / 10 } else { n }
}

fn idle_target() -> usize {
    let wanted = std::env::var("INFRA_BENCH_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(IDLE_CONNECTIONS);
    scaled(wanted)
}

fn raise_open_files(wanted: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it, what the hard limit allows.
    if hard < wanted && setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        return wanted;
    }
    let target = wanted.min(hard);
    if soft < target {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).expect("setrlimit");
    }
    target
}

/// The loopback source address of the `n`th client connection: 127.0.0.2 … 127.0.0.5.
fn source(n: usize) -> std::net::Ipv4Addr {
    let index = u8::try_from(2 + n % SOURCES).expect("a handful of sources");
    std::net::Ipv4Addr::new(127, 0, 0, index)
}

/// A client connection from `from`, with the clients' small read buffer.
async fn connect_from(
    from: std::net::Ipv4Addr,
    addr: SocketAddr,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    let stream = socket.connect(addr).await.expect("connect");
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    tokio_tungstenite::client_async_with_config(format!("ws://{addr}{path}"), stream, Some(config))
        .await
        .expect("handshake")
        .0
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn connect(
    addr: SocketAddr,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    // tungstenite zero-fills its whole read buffer before every read: at the default 128 KiB,
    // 1,000 clients spent more CPU clearing memory than both servers did delivering (a
    // quarter of all samples under `perf`), so the clients read 4 KiB at a time, near what the
    // server does.
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    tokio_tungstenite::connect_async_with_config(format!("ws://{addr}{path}"), Some(config), false)
        .await
        .expect("handshake")
        .0
}

/// The server's RSS growth per idle connection, in KiB.
async fn idle_connections(idle: usize) -> f64 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_infra-realtime-server"))
        .env_clear()
        .env("PUSHER_APP_ID", "1")
        .env("PUSHER_KEY", KEY)
        .env("PUSHER_SECRET", "bench-secret")
        .env("INFRA_REALTIME_ADDR", format!("127.0.0.1:{port}"))
        .env("INFRA_REALTIME_MAX_CONNECTIONS", (idle + 1_000).to_string())
        // A few loopback addresses hold every client of this measurement.
        .env("INFRA_REALTIME_MAX_CONNECTIONS_PER_IP", "0")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("server binary");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < until, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Warm up allocator and runtime with a few connections first.
    let mut clients = Vec::with_capacity(idle);
    for n in 0..100 {
        let mut ws = connect_from(source(n), addr, &format!("/app/{KEY}?protocol=7")).await;
        ws.next().await.expect("established").expect("frame");
        clients.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(child.id());
    let started = Instant::now();
    let mut batch = Vec::new();
    for n in 100..idle {
        batch.push(tokio::spawn(async move {
            let mut ws = connect_from(source(n), addr, &format!("/app/{KEY}?protocol=7")).await;
            ws.next().await.expect("established").expect("frame");
            ws
        }));
        if batch.len() == 200 {
            for task in batch.drain(..) {
                clients.push(task.await.unwrap());
            }
        }
    }
    for task in batch.drain(..) {
        clients.push(task.await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(child.id());
    let added = (idle - 100) as f64;
    let per_connection = (after.saturating_sub(before)) as f64 / added;
    println!(
        "idle connections: {idle} open from {} source addresses in {:.1}s; server RSS {before} KiB -> {after} KiB = {per_connection:.1} KiB per connection (goal <= 10)",
        SOURCES.min(idle),
        started.elapsed().as_secs_f64()
    );
    drop(clients);
    let _ = child.kill();
    let _ = child.wait();
    per_connection
}

/// The `t` of a tick frame's data (`\"t\":123` inside the data string), without a JSON
/// parse.
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

/// Latencies (µs) of every delivery, and the messages/s over all rounds.
struct FanOut {
    p50_us: f64,
    p99_us: f64,
    msgs_per_sec: f64,
}

/// Connects `count` clients (already subscribed once this returns) that report each tick's
/// latency against `base`.
async fn subscribers(
    addr: SocketAddr,
    path: &str,
    subscribe: Option<Value>,
    base: Instant,
    latencies: mpsc::UnboundedSender<u64>,
    count: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..count {
        let mut ws = connect(addr, path).await;
        if let Some(frame) = &subscribe {
            ws.next().await.unwrap().unwrap(); // connection_established
            ws.send(Message::text(frame.to_string())).await.unwrap();
            ws.next().await.unwrap().unwrap(); // subscription_succeeded
        }
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                // Cheap on purpose: the clients share the machine with the server under test,
                // so they only pick out the send time instead of parsing the frame.
                let Some(sent) = send_time(&text) else {
                    continue;
                };
                let now = base.elapsed().as_micros() as u64;
                let _ = latencies.send(now.saturating_sub(sent));
            }
        }));
    }
    tasks
}

/// The size of one fan-out run.
#[derive(Clone, Copy)]
struct Run {
    subscribers: usize,
    rounds: usize,
}

async fn run_rounds(
    base: Instant,
    mut latencies: mpsc::UnboundedReceiver<u64>,
    run: Run,
    publish: impl Fn(u64) -> futures_util::future::BoxFuture<'static, ()>,
) -> FanOut {
    let mut all = Vec::with_capacity(run.rounds * run.subscribers);
    let started = Instant::now();
    for _ in 0..run.rounds {
        publish(base.elapsed().as_micros() as u64).await;
        for _ in 0..run.subscribers {
            let latency = tokio::time::timeout(Duration::from_secs(10), latencies.recv())
                .await
                .expect("every subscriber receives")
                .expect("open");
            all.push(latency);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize] as f64;
    FanOut {
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        msgs_per_sec: all.len() as f64 / elapsed,
    }
}

async fn ours(base: Instant, run: Run) -> FanOut {
    let mut limits = AppLimits::default();
    limits.max_connections = 20_000;
    // Every client of the run comes from 127.0.0.1.
    limits.max_connections_per_ip = 0;
    let server = RealtimeServer::new(ServerConfig::new(vec![
        AppConfig::new("1", KEY, "bench-secret").with_limits(limits),
    ]))
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    let serving = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let (tx, rx) = mpsc::unbounded_channel();
    let tasks = subscribers(
        addr,
        &format!("/app/{KEY}?protocol=7"),
        Some(json!({"event": "pusher:subscribe", "data": {"channel": "bench"}})),
        base,
        tx,
        run.subscribers,
    )
    .await;
    let server = Arc::new(server);
    let channel = ChannelName::new("bench").unwrap();
    let event = EventName::new("tick").unwrap();
    let result = run_rounds(base, rx, run, move |t| {
        let (server, channel, event) = (server.clone(), channel.clone(), event.clone());
        Box::pin(async move {
            server
                .trigger(&[channel], &event, &json!({"t": t}))
                .await
                .unwrap();
        })
    })
    .await;
    for task in tasks {
        task.abort();
    }
    serving.abort();
    result
}

async fn raw(base: Instant, run: Run) -> FanOut {
    let (hub, _) = broadcast::channel::<Message>(1024);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (hub_for_accept, counter) = (hub.clone(), accepted.clone());
    let serving = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut inbox = hub_for_accept.subscribe();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Ok(message) = inbox.recv().await {
                    if ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let tasks = subscribers(addr, "/", None, base, tx, run.subscribers).await;
    while accepted.load(Ordering::SeqCst) < run.subscribers {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let result = run_rounds(base, rx, run, move |t| {
        let hub = hub.clone();
        Box::pin(async move {
            // The same frame our server sends, encoded once and shared by every socket.
            let data = json!({"t": t}).to_string();
            let frame = json!({"event": "tick", "channel": "bench", "data": data}).to_string();
            let _ = hub.send(Message::text(frame));
        })
    })
    .await;
    for task in tasks {
        task.abort();
    }
    serving.abort();
    result
}

fn main() {
    let wanted = idle_target();
    let limit = raise_open_files(wanted as u64 + 25_000) as usize;
    // The server (its own process) and this one each hold a descriptor per connection: a hard
    // limit this process may not raise (no CAP_SYS_RESOURCE) caps the run, and says so.
    let idle = wanted.min(limit.saturating_sub(1_000));
    println!("open-file limit: {limit}");
    if idle < wanted {
        println!(
            "idle connections: {wanted} asked, capped at {idle} by the open-file limit {limit} \
             (the hard limit; raising it needs CAP_SYS_RESOURCE or a higher `ulimit -Hn`)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if idle < 1_000 {
            println!("idle connections: skipped ({idle} asked)");
        } else {
            let per_connection = idle_connections(idle).await;
            Row::new(
                "infra-realtime",
                format!("{idle} idle WebSocket connections, server RSS"),
                "KiB/connection",
            )
            .ours(Side::new("infra-realtime-server (own process)", per_connection))
            .goal(Goal::figure_at_most(10.0))
            .emit()
            .expect("bench report written");
        }
        let side = |name: &str, f: &FanOut| {
            Side::new(name, f.msgs_per_sec).with_latency(
                Duration::from_secs_f64(f.p50_us / 1e6),
                Duration::from_secs_f64(f.p99_us / 1e6),
            )
        };
        for (wanted, rounds, p99_goal) in FAN_OUTS {
            // Server and clients share this process: two descriptors per subscriber.
            let subscribers = wanted.min(limit.saturating_sub(3_000) / 2);
            if subscribers < wanted {
                println!(
                    "fan-out: {wanted} subscribers asked, capped at {subscribers} by the \
                     open-file limit {limit}"
                );
            }
            let run = Run {
                subscribers,
                rounds: scaled(rounds),
            };
            // The last run's server-side sockets close once its clients' closes arrive.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let base = Instant::now();
            let raw = raw(base, run).await;
            let ours = ours(base, run).await;
            println!(
                "fan-out to {subscribers} subscribers x {} events:\n  raw tokio-tungstenite broadcast: p50 {:.0} µs, p99 {:.0} µs, {:.0} msgs/s\n  infra-realtime server:           p50 {:.0} µs, p99 {:.0} µs, {:.0} msgs/s\n  ratio (ours/raw msgs/s): {:.2} (goal >= 0.7); p99 goal <= {p99_goal:?}",
                run.rounds, raw.p50_us, raw.p99_us, raw.msgs_per_sec, ours.p50_us, ours.p99_us, ours.msgs_per_sec,
                ours.msgs_per_sec / raw.msgs_per_sec
            );
            Row::new(
                "infra-realtime",
                format!("fan-out, 1 event to {subscribers} subscribers x {}", run.rounds),
                "msgs/s",
            )
            .ours(side("infra-realtime server (in-process trigger)", &ours))
            .baseline(side("raw tokio-tungstenite broadcast, a task per socket", &raw))
            .goal(Goal::ratio_at_least(0.7))
            .goal(Goal::p99_at_most(p99_goal))
            .emit()
            .expect("bench report written");
        }

        // Issue 21's row: the same fan-out on a server built after the Prometheus recorder
        // was installed (its handles record every frame, byte and fan-out) against one built
        // before it (no-op handles), measured back to back; goal ≥ 0.97. Last: the recorder
        // is process-wide and stays.
        let (wanted, rounds, _) = FAN_OUTS[0];
        let run = Run {
            subscribers: wanted.min(limit.saturating_sub(3_000) / 2),
            rounds: scaled(rounds),
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let plain = self::ours(Instant::now(), run).await;
        infra_core::metrics_exporter::install_prometheus_recorder().unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let recorded = self::ours(Instant::now(), run).await;
        println!(
            "  with the Prometheus recorder: {:.0} msgs/s (p99 {:.0} µs), without: {:.0} msgs/s (p99 {:.0} µs); ratio {:.3} (goal >= 0.97)",
            recorded.msgs_per_sec, recorded.p99_us, plain.msgs_per_sec, plain.p99_us,
            recorded.msgs_per_sec / plain.msgs_per_sec
        );
        Row::new(
            "infra-realtime",
            format!(
                "fan-out, 1 event to {} subscribers x {}, with the Prometheus recorder",
                run.subscribers, run.rounds
            ),
            "msgs/s",
        )
        .ours(side("infra-realtime server, Prometheus recorder", &recorded))
        .baseline(side("infra-realtime server, no recorder, run just before", &plain))
        .goal(Goal::ratio_at_least(0.97))
        .emit()
        .expect("bench report written");
    });
}
