//! `cargo xtask faults hostile`: hostile clients against a release-built standalone
//! `infra-realtime-server` with its default limits and webhooks on, one attack at a time,
//! while a legitimate subscriber receives an event every 20 ms triggered through the HTTP API.
//!
//! Attacks: one socket subscribing to 100,000 channels; a subscriber that stops reading while
//! 600 events of 9 KB go to its channel; 1,500 connections from one address; 200 connections
//! that never finish their request head (slowloris, closed by `INFRA_HTTP_HEADER_READ_TIMEOUT`,
//! 10 s by default). For each: the
//! load, what the server did, the legitimate subscriber's p99 latency during the attack, the
//! time from the attacker leaving until the server is idle again (its CPU back to what the
//! legitimate traffic costs, and the attacker's channels gone), and its memory and CPU after.
//! Goals: p99 under 100 ms, idle within 1 s, memory back near where it started. Lost counts
//! acknowledged legitimate events the subscriber never received (must be 0).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use infra::core::RetryPolicy;
use infra::realtime::{ChannelsQuery, PusherClient, PusherConfig};
use infra::{ChannelName, EventName, Realtime};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::FaultReport;

const APP_ID: &str = "hostile";
const KEY: &str = "hostile-key";
const SECRET: &str = "hostile-secret-not-used-elsewhere";
/// The legitimate subscriber's channel.
const LEGIT: &str = "legit-feed";
/// How often the legitimate publisher triggers an event.
const TICK: Duration = Duration::from_millis(20);
/// Channels the flooding socket asks for.
const FLOOD_CHANNELS: usize = 100_000;
/// Events (and their size) sent towards the subscriber that stops reading.
const FIREHOSE_EVENTS: usize = 600;
const FIREHOSE_BYTES: usize = 9 * 1024;
/// Connections the flooding address opens.
const CONNECTION_FLOOD: usize = 1_500;
/// Connections that send half a request head and then nothing.
const SLOWLORIS: usize = 200;
/// Longest wait for the server to close a slowloris connection (its default timeout is 10 s).
const SLOWLORIS_PATIENCE: Duration = Duration::from_secs(30);
/// Where the attackers connect from: not the legitimate subscriber's address.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Longest wait for the server to be idle again.
const IDLE_PATIENCE: Duration = Duration::from_secs(15);
/// The window CPU use is judged over: with 10 ms clock ticks, one tick is 10% of a core.
const CPU_WINDOW: Duration = Duration::from_millis(100);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server process.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(binary: &std::path::Path, webhook_url: &str) -> Result<Server> {
        let port = super::spare_port()?;
        let mut child = Command::new(binary)
            .env_clear()
            .env("PUSHER_APP_ID", APP_ID)
            .env("PUSHER_KEY", KEY)
            .env("PUSHER_SECRET", SECRET)
            .env("INFRA_REALTIME_ADDR", format!("127.0.0.1:{port}"))
            .env("INFRA_REALTIME_WEBHOOK_URL", webhook_url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        super::server_ready::wait_until_listening(&mut child, "server")?;
        Ok(Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn api(&self) -> Result<PusherClient> {
        let base = url::Url::parse(&format!("http://{}", self.addr))?;
        Ok(PusherClient::new(
            PusherConfig::new(base, APP_ID, KEY, SECRET)
                .with_timeout(Duration::from_secs(5))
                .with_retry(RetryPolicy::none()),
        )?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory (KiB) and CPU time (clock ticks) of a process, from `/proc`.
fn proc_stats(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS in /proc/<pid>/status")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start with the state, field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a /proc/<pid>/stat line")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let cpu = ticks(11)
        .zip(ticks(12))
        .map(|(u, s)| u + s)
        .context("utime and stime")?;
    Ok((rss, cpu))
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// CPU use of `pid` over `window`, in percent of one core.
async fn cpu_percent(pid: u32, window: Duration) -> Result<f64> {
    let (_, before) = proc_stats(pid)?;
    tokio::time::sleep(window).await;
    let (_, after) = proc_stats(pid)?;
    Ok((after - before) as f64 * 100.0 / TICKS_PER_SECOND as f64 / window.as_secs_f64())
}

/// The legitimate subscriber and publisher, and what they saw.
struct Legit {
    started: Instant,
    /// Per event: when it was sent (since `started`) and how long it took to arrive.
    latencies: Mutex<Vec<(Duration, Duration)>>,
    acknowledged: Mutex<Vec<u64>>,
    received: Mutex<std::collections::BTreeSet<u64>>,
    failed: AtomicU64,
    stop: AtomicBool,
}

impl Legit {
    /// p99 of the events sent within `from..to` (since `started`), in ms.
    fn p99_ms(&self, from: Duration, to: Duration) -> Option<f64> {
        let mut within: Vec<Duration> = self
            .latencies
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _)| *sent >= from && *sent <= to)
            .map(|(_, latency)| *latency)
            .collect();
        if within.is_empty() {
            return None;
        }
        within.sort();
        let index = ((within.len() as f64 * 0.99).ceil() as usize).clamp(1, within.len()) - 1;
        Some(within[index].as_secs_f64() * 1000.0)
    }

    fn since_start(&self) -> Duration {
        self.started.elapsed()
    }
}

async fn connect(
    addr: SocketAddr,
    from: Option<IpAddr>,
    recv_buffer: Option<u32>,
) -> Result<Socket> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(from) = from {
        socket.bind(SocketAddr::new(from, 0))?;
    }
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let stream = socket.connect(addr).await?;
    let url = format!("ws://{addr}/app/{KEY}?protocol=7&client=js&version=8.4.0");
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await?;
    Ok(ws)
}

/// The next text frame as JSON; `None` when the connection closed (with its code).
async fn next_frame(ws: &mut Socket, patience: Duration) -> Result<Result<Value, Option<u16>>> {
    loop {
        match tokio::time::timeout(patience, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Ok(Ok(serde_json::from_str(&text)?)),
            Ok(Some(Ok(Message::Close(frame)))) => return Ok(Err(frame.map(|f| f.code.into()))),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return Ok(Err(None)),
            Err(_) => bail!("no frame within {patience:?}"),
        }
    }
}

async fn subscribe_legit(addr: SocketAddr) -> Result<Socket> {
    let mut ws = connect(addr, None, None).await?;
    next_frame(&mut ws, Duration::from_secs(10))
        .await?
        .ok()
        .context("connected")?;
    ws.send(Message::text(
        json!({"event": "pusher:subscribe", "data": {"channel": LEGIT}}).to_string(),
    ))
    .await?;
    loop {
        let frame = next_frame(&mut ws, Duration::from_secs(10))
            .await?
            .ok()
            .context("the legitimate subscriber was closed")?;
        if frame["event"] == "pusher_internal:subscription_succeeded" {
            return Ok(ws);
        }
    }
}

/// Reads the legitimate feed until told to stop, recording each event's latency.
async fn read_legit(mut ws: Socket, legit: Arc<Legit>) {
    while !legit.stop.load(Ordering::SeqCst) {
        let Ok(Ok(frame)) = next_frame(&mut ws, Duration::from_millis(200)).await else {
            continue;
        };
        if frame["event"] != "tick" {
            continue;
        }
        let data: Value =
            serde_json::from_str(frame["data"].as_str().unwrap_or("{}")).unwrap_or_default();
        let (Some(n), Some(sent_us)) = (data["n"].as_u64(), data["sent_us"].as_u64()) else {
            continue;
        };
        let sent = Duration::from_micros(sent_us);
        let latency = legit.since_start().saturating_sub(sent);
        legit.latencies.lock().unwrap().push((sent, latency));
        legit.received.lock().unwrap().insert(n);
    }
}

/// Triggers a numbered event every `TICK` until told to stop.
async fn publish_legit(api: Arc<PusherClient>, legit: Arc<Legit>) {
    let channel = ChannelName::new(LEGIT).expect("a valid channel");
    let tick = EventName::new("tick").expect("a valid event");
    let mut n = 0u64;
    let mut next = tokio::time::Instant::now();
    while !legit.stop.load(Ordering::SeqCst) {
        n += 1;
        let sent_us = legit.since_start().as_micros() as u64;
        let data = json!({"n": n, "sent_us": sent_us});
        match api
            .trigger(std::slice::from_ref(&channel), &tick, &data)
            .await
        {
            Ok(()) => legit.acknowledged.lock().unwrap().push(n),
            Err(_) => {
                legit.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        next += TICK;
        tokio::time::sleep_until(next).await;
    }
}

/// One attack's row.
struct Row {
    attack: &'static str,
    load: String,
    outcome: String,
    p99_ms: Option<f64>,
    idle_after: Option<Duration>,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_after_kib: u64,
    cpu_after: f64,
}

/// Samples the server's resident memory every 50 ms until stopped; returns the peak.
fn watch_memory(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::SeqCst) {
            if let Ok((rss, _)) = proc_stats(pid) {
                peak = peak.max(rss);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak
    })
}

/// From now until the server is idle: its CPU over a `CPU_WINDOW` within 10 points of the
/// baseline (the legitimate traffic's), and no channel but the legitimate one occupied.
/// Returns when that window ended: an upper bound, to the window's resolution.
async fn time_to_idle(pid: u32, api: &PusherClient, baseline: f64) -> Result<Option<Duration>> {
    let left = Instant::now();
    let mut samples: std::collections::VecDeque<(Instant, u64)> = std::collections::VecDeque::new();
    while left.elapsed() < IDLE_PATIENCE {
        let now = Instant::now();
        let (_, ticks) = proc_stats(pid)?;
        samples.push_back((now, ticks));
        while samples.len() > 1 && now.duration_since(samples[1].0) >= CPU_WINDOW {
            samples.pop_front();
        }
        let (first_at, first_ticks) = samples[0];
        let span = now.duration_since(first_at);
        if span >= CPU_WINDOW {
            let cpu =
                (ticks - first_ticks) as f64 * 100.0 / TICKS_PER_SECOND as f64 / span.as_secs_f64();
            if cpu <= baseline + 10.0 {
                let channels = api.channels(&ChannelsQuery::all()).await?;
                if channels.channels.keys().all(|c| c == LEGIT) {
                    return Ok(Some(now.duration_since(left)));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(None)
}

/// One socket subscribing to `FLOOD_CHANNELS` channels as fast as it can, reading answers.
async fn subscribe_flood(addr: SocketAddr) -> Result<String> {
    let mut ws = connect(addr, Some(ATTACKER), None).await?;
    next_frame(&mut ws, Duration::from_secs(10))
        .await?
        .ok()
        .context("connected")?;
    let (mut tx, mut rx) = ws.split();
    let reader = tokio::spawn(async move {
        let (mut succeeded, mut at_cap, mut rate_limited, mut closed) = (0u64, 0u64, 0u64, None);
        while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(60), rx.next()).await
        {
            match message {
                Ok(Message::Text(text)) => {
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    match frame["event"].as_str() {
                        Some("pusher_internal:subscription_succeeded") => succeeded += 1,
                        Some("pusher:subscription_error") => {
                            let data: Value =
                                serde_json::from_str(frame["data"].as_str().unwrap_or("{}"))
                                    .unwrap_or_default();
                            match data["status"].as_u64() {
                                Some(429) => rate_limited += 1,
                                _ => at_cap += 1,
                            }
                        }
                        Some("pusher:pong") => break,
                        _ => {}
                    }
                }
                Ok(Message::Close(frame)) => {
                    closed = Some(frame.map_or(0, |f| u16::from(f.code)));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (succeeded, at_cap, rate_limited, closed)
    });
    for i in 0..FLOOD_CHANNELS {
        let frame = json!({"event": "pusher:subscribe", "data": {"channel": format!("flood-{i}")}});
        if tx.send(Message::text(frame.to_string())).await.is_err() {
            break;
        }
    }
    let _ = tx
        .send(Message::text(
            json!({"event": "pusher:ping", "data": {}}).to_string(),
        ))
        .await;
    let (succeeded, at_cap, rate_limited, closed) = reader.await?;
    let _ = tx.close().await;
    Ok(format!(
        "{succeeded} subscribed; {at_cap} refused at the channel limit (403), {rate_limited} \
         over the subscribe rate (429); {}",
        match closed {
            Some(code) => format!("closed with {code}"),
            None => "connection kept, every subscribe answered".into(),
        }
    ))
}

/// A subscriber with a 4 KiB receive buffer that stops reading while `FIREHOSE_EVENTS`
/// events of `FIREHOSE_BYTES` go to its channel.
async fn stalled_reader(addr: SocketAddr, api: &PusherClient) -> Result<String> {
    let mut ws = connect(addr, Some(ATTACKER), Some(4096)).await?;
    next_frame(&mut ws, Duration::from_secs(10))
        .await?
        .ok()
        .context("connected")?;
    ws.send(Message::text(
        json!({"event": "pusher:subscribe", "data": {"channel": "firehose"}}).to_string(),
    ))
    .await?;
    next_frame(&mut ws, Duration::from_secs(10))
        .await?
        .ok()
        .context("subscribed")?;
    let channel = ChannelName::new("firehose")?;
    let event = EventName::new("bulk")?;
    let payload = json!("z".repeat(FIREHOSE_BYTES));
    let started = Instant::now();
    for _ in 0..FIREHOSE_EVENTS {
        api.trigger(std::slice::from_ref(&channel), &event, &payload)
            .await?;
    }
    // Until the server no longer counts it subscribed.
    let dropped_after = loop {
        let info = api.channel(&channel, &[]).await?;
        if !info.occupied {
            break Some(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(30) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // What it learns once it reads again.
    let mut code = None;
    while let Ok(next) = next_frame(&mut ws, Duration::from_secs(5)).await {
        if let Err(closed) = next {
            code = closed;
            break;
        }
    }
    Ok(match dropped_after {
        Some(after) => format!(
            "unsubscribed and closed {} ms after the events started; the client read close code {}",
            after.as_millis(),
            code.map_or_else(|| "none (connection dropped)".to_owned(), |c| c.to_string())
        ),
        None => "still subscribed after 30 s".into(),
    })
}

/// `CONNECTION_FLOOD` connections from one address, held open.
async fn connection_flood(addr: SocketAddr) -> Result<(String, Vec<Socket>)> {
    let mut held = Vec::new();
    let (mut refused, mut failed) = (0u64, 0u64);
    for _ in 0..CONNECTION_FLOOD {
        let Ok(mut ws) = connect(addr, Some(ATTACKER), None).await else {
            failed += 1;
            continue;
        };
        match next_frame(&mut ws, Duration::from_secs(10)).await {
            Ok(Ok(frame)) if frame["event"] == "pusher:connection_established" => held.push(ws),
            Ok(Ok(frame)) if frame["event"] == "pusher:error" => {
                let data: Value = serde_json::from_str(frame["data"].as_str().unwrap_or("{}"))
                    .unwrap_or_default();
                let closed = next_frame(&mut ws, Duration::from_secs(10)).await;
                if data["code"] == 4100 && matches!(closed, Ok(Err(Some(4100)))) {
                    refused += 1;
                } else {
                    failed += 1;
                }
            }
            _ => failed += 1,
        }
    }
    Ok((
        format!(
            "{} accepted, {refused} refused with pusher:error + close 4100{}",
            held.len(),
            if failed > 0 {
                format!(", {failed} failed otherwise")
            } else {
                String::new()
            }
        ),
        held,
    ))
}

/// `SLOWLORIS` connections that send an unfinished request head, held until the server
/// closes them.
async fn slowloris(addr: SocketAddr) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut waits = tokio::task::JoinSet::new();
    for _ in 0..SLOWLORIS {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(ATTACKER, 0))?;
        let mut stream = socket.connect(addr).await?;
        let opened = Instant::now();
        stream
            .write_all(format!("GET /apps/{APP_ID}/channels HTTP/1.1\r\nHost: x\r\n").as_bytes())
            .await?;
        waits.spawn(async move {
            let mut buf = [0u8; 256];
            // The server's close shows as the end of the stream (or a reset).
            let closed = tokio::time::timeout(SLOWLORIS_PATIENCE, async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            closed.ok().map(|()| opened.elapsed())
        });
    }
    let mut closed_after = Vec::new();
    let mut open = 0usize;
    while let Some(wait) = waits.join_next().await {
        match wait? {
            Some(after) => closed_after.push(after),
            None => open += 1,
        }
    }
    closed_after.sort();
    Ok(match (closed_after.first(), closed_after.last()) {
        (Some(first), Some(last)) => format!(
            "{} of {SLOWLORIS} closed by the server {:.2}–{:.2} s after they opened{}",
            closed_after.len(),
            first.as_secs_f64(),
            last.as_secs_f64(),
            if open > 0 {
                format!(
                    "; {open} still open after {} s",
                    SLOWLORIS_PATIENCE.as_secs()
                )
            } else {
                String::new()
            }
        ),
        _ => format!("none closed within {} s", SLOWLORIS_PATIENCE.as_secs()),
    })
}

/// Builds the server binary in release mode; returns its path.
fn release_binary() -> Result<std::path::PathBuf> {
    let root = crate::project_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "-q",
            "--release",
            "-p",
            "infra-realtime",
            "--bin",
            "infra-realtime-server",
        ])
        .status()?;
    if !status.success() {
        bail!("building infra-realtime-server (release) failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release").join("infra-realtime-server"))
}

/// A receiver answering every webhook at once; counts the events.
async fn webhook_receiver() -> Result<(String, Arc<AtomicU64>)> {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let hooks = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                let events = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|b| b["events"].as_array().map(Vec::len))
                    .unwrap_or(0);
                counter.fetch_add(events as u64, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, hooks).await;
    });
    Ok((url, received))
}

/// Raises this process's open-file limit to the hard limit (the server, its child, inherits
/// it): the connection flood holds more sockets than a default soft limit of 1024 allows.
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The scenario.
pub fn attacks(runtime: &tokio::runtime::Runtime) -> Result<FaultReport> {
    raise_open_files();
    let binary = release_binary()?;
    runtime.block_on(async {
        let (webhook_url, webhooks) = webhook_receiver().await?;
        let server = Server::start(&binary, &webhook_url)?;
        let pid = server.pid();
        let api = Arc::new(server.api()?);
        let legit = Arc::new(Legit {
            started: Instant::now(),
            latencies: Mutex::default(),
            acknowledged: Mutex::default(),
            received: Mutex::default(),
            failed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let reader = tokio::spawn(read_legit(subscribe_legit(server.addr).await?, legit.clone()));
        let publisher = tokio::spawn(publish_legit(api.clone(), legit.clone()));
        // Past the first events (connections warming up), the legitimate traffic alone.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let from = legit.since_start();
        let baseline = cpu_percent(pid, Duration::from_secs(1)).await?;
        let baseline_p99 = legit.p99_ms(from, legit.since_start());

        let mut rows = Vec::new();
        for attack in [
            "subscribe flood",
            "subscriber that stops reading",
            "connection flood",
            "slowloris",
        ] {
            let (rss_before, _) = proc_stats(pid)?;
            let stop_watch = Arc::new(AtomicBool::new(false));
            let memory = watch_memory(pid, stop_watch.clone());
            let from = legit.since_start();
            let attack_started = Instant::now();
            let (load, outcome) = match attack {
                "subscribe flood" => (
                    format!("one socket sends `pusher:subscribe` for {FLOOD_CHANNELS} different public channels"),
                    subscribe_flood(server.addr).await?,
                ),
                "subscriber that stops reading" => (
                    format!("a subscriber with a 4 KiB receive buffer stops reading; {FIREHOSE_EVENTS} events of {} KB go to its channel", FIREHOSE_BYTES / 1024),
                    stalled_reader(server.addr, &api).await?,
                ),
                "slowloris" => (
                    format!("{SLOWLORIS} connections send `GET /apps/{APP_ID}/channels HTTP/1.1\\r\\nHost: x\\r\\n` and never finish the head"),
                    slowloris(server.addr).await?,
                ),
                _ => {
                    let (outcome, held) = connection_flood(server.addr).await?;
                    drop(held);
                    (format!("{CONNECTION_FLOOD} WebSocket connections from one address, held open"), outcome)
                }
            };
            let to = legit.since_start();
            let load = format!("{load} ({:.1} s)", attack_started.elapsed().as_secs_f64());
            let idle_after = time_to_idle(pid, &api, baseline).await?;
            stop_watch.store(true, Ordering::SeqCst);
            let rss_peak = memory.await?;
            let cpu_after = cpu_percent(pid, Duration::from_secs(1)).await?;
            let (rss_after, _) = proc_stats(pid)?;
            println!("   {attack}: {outcome}");
            rows.push(Row {
                attack,
                load,
                outcome,
                p99_ms: legit.p99_ms(from, to),
                idle_after,
                rss_before_kib: rss_before,
                rss_peak_kib: rss_peak.max(rss_before),
                rss_after_kib: rss_after,
                cpu_after,
            });
        }

        legit.stop.store(true, Ordering::SeqCst);
        publisher.await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        reader.await?;
        let acknowledged = legit.acknowledged.lock().unwrap().clone();
        let received = legit.received.lock().unwrap().clone();
        let lost = acknowledged.iter().filter(|n| !received.contains(n)).count() as u64;
        let worst_idle = rows.iter().filter_map(|r| r.idle_after).max().unwrap_or_default();
        let goals_missed = rows
            .iter()
            .filter(|r| r.p99_ms.is_none_or(|p| p >= 100.0) || r.idle_after.is_none_or(|d| d > Duration::from_secs(1)))
            .count();
        let table = table(&rows, baseline, baseline_p99);
        drop(server);
        Ok(FaultReport {
            scenario: "hostile",
            fault: format!(
                "{} attacks on a release-built infra-realtime-server (default limits, webhooks on) \
                 while a legitimate subscriber gets an event every {} ms",
                rows.len(),
                TICK.as_millis()
            ),
            lost,
            acknowledged: acknowledged.len() as u64,
            failed_calls: legit.failed.load(Ordering::SeqCst),
            recovery: worst_idle,
            note: format!(
                "recovery = the longest time to idle after an attacker left; {goals_missed} \
                 attack(s) missed a goal (p99 < 100 ms, idle within 1 s); {} webhook events \
                 received; the per-attack table is under \"Hostile clients\"",
                webhooks.load(Ordering::SeqCst)
            ),
            section: Some(("hostile", table)),
        })
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn table(rows: &[Row], baseline_cpu: f64, baseline_p99: Option<f64>) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "Without an attack the legitimate subscriber's p99 was {} and the server used {:.0}% \
         of a core. Idle: the first {} ms window after the attacker left with the server's CPU \
         back to that and the attacker's channels gone, measured to its end.\n\n| attack | \
         load (duration) | what the server did | legitimate p99 during | idle after the \
         attacker left | memory and CPU after |\n|---|---|---|---|---|---|\n",
        baseline_p99.map_or("–".into(), |p| format!("{p:.1} ms")),
        baseline_cpu,
        CPU_WINDOW.as_millis()
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | RSS {} → peak {} → {} after; {:.0}% CPU |",
            r.attack,
            r.load,
            r.outcome,
            r.p99_ms
                .map_or("no events".into(), |p| format!("{p:.1} ms")),
            r.idle_after.map_or(
                format!("not within {} s", IDLE_PATIENCE.as_secs()),
                |d| format!("≤ {} ms", d.as_millis())
            ),
            mib(r.rss_before_kib),
            mib(r.rss_peak_kib),
            mib(r.rss_after_kib),
            r.cpu_after
        );
    }
    out
}
