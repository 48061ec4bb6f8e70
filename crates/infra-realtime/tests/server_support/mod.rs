//! Starts an embedded server on a free port and drives it with a plain WebSocket client.
#![allow(dead_code)] // each test file uses part of the helpers

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use infra_core::{ChannelName, Secret};
use infra_realtime::server::{AppConfig, RealtimeServer, ServerConfig};
use infra_realtime::signature;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[cfg(feature = "server-redis")]
mod backend;
#[cfg(feature = "server-redis")]
mod redis_prefix;
pub mod webhook_receiver;
#[cfg(feature = "server-redis")]
#[allow(unused_imports)] // only the clustered tests use them
pub use backend::{Backend, TestConn};
#[cfg(feature = "server-redis")]
#[allow(unused_imports)] // only the clustered tests use them
pub use redis_prefix::{Prefix, REDIS_URL, unique_prefix};

pub const APP_ID: &str = "3";
pub const KEY: &str = "278d425bdf160c739803";
pub const SECRET: &str = "7ad3773142a6692b25b8";
/// Deadline for anything a test waits on; only there to avoid hangs.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn app() -> AppConfig {
    AppConfig::new(APP_ID, KEY, SECRET)
}

pub fn secret() -> Secret<String> {
    Secret::new(SECRET.to_owned())
}

/// Serves `config` on a free loopback port.
pub async fn start(config: ServerConfig) -> (RealtimeServer, SocketAddr) {
    let server = RealtimeServer::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (server, addr)
}

pub async fn start_default() -> (RealtimeServer, SocketAddr) {
    start(ServerConfig::new(vec![app()])).await
}

/// Like [`start`], served with each connection's peer address (axum's `ConnectInfo`), as a
/// server whose per-address limits apply.
pub async fn start_with_peer_addresses(config: ServerConfig) -> (RealtimeServer, SocketAddr) {
    let server = RealtimeServer::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = server
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    (server, addr)
}

/// A WebSocket to `addr` from the loopback address `from` (any 127.x.y.z works on Linux),
/// with a receive buffer of `recv_buffer` bytes when given.
pub async fn connect_from(
    addr: SocketAddr,
    path_and_query: &str,
    from: std::net::IpAddr,
    recv_buffer: Option<u32>,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}{path_and_query}");
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .expect("websocket handshake");
    ws
}

/// A WebSocket to `addr` whose upgrade request carries `X-Forwarded-For: {forwarded_for}`, as
/// a proxy in front of the server writes it.
pub async fn connect_forwarded(
    addr: SocketAddr,
    path_and_query: &str,
    forwarded_for: &str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}{path_and_query}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket handshake");
    ws
}

/// A protocol-level test client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
    pub activity_timeout: u64,
}

pub async fn raw_connect(
    addr: SocketAddr,
    path_and_query: &str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path_and_query}"))
        .await
        .expect("websocket handshake");
    ws
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::connect_with(addr, KEY, 7).await
    }

    pub async fn connect_with(addr: SocketAddr, key: &str, protocol: u32) -> Client {
        let ws = raw_connect(
            addr,
            &format!("/app/{key}?protocol={protocol}&client=js&version=8.4.0"),
        )
        .await;
        Client::established(ws).await
    }

    /// A client over a socket made by [`connect_from`], once the server said it is connected.
    pub async fn connect_from(
        addr: SocketAddr,
        from: std::net::IpAddr,
        recv_buffer: Option<u32>,
    ) -> Client {
        let path = format!("/app/{KEY}?protocol=7&client=js&version=8.4.0");
        Client::established(connect_from(addr, &path, from, recv_buffer).await).await
    }

    /// Reads `pusher:connection_established` on a fresh socket.
    pub async fn established(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        let mut client = Client {
            ws,
            socket_id: String::new(),
            activity_timeout: 0,
        };
        let established = client.recv().await;
        assert_eq!(
            established["event"], "pusher:connection_established",
            "{established}"
        );
        let data = data_of(&established);
        client.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        client.activity_timeout = data["activity_timeout"].as_u64().unwrap();
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// The next protocol frame (WebSocket pings are skipped).
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame within the deadline")
                .expect("the connection is open")
                .expect("a readable frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Skips frames until one with `event` (and `channel` when given).
    pub async fn recv_event(&mut self, event: &str, channel: Option<&str>) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["event"] == event && channel.is_none_or(|c| frame["channel"] == c) {
                return frame;
            }
        }
    }

    /// Waits for the close frame; returns its code. Text frames before it are returned too.
    pub async fn closed(&mut self) -> (u16, Vec<Value>) {
        let mut frames = Vec::new();
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the close within the deadline");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => return (frame.code.into(), frames),
                Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    }

    /// Subscribes and returns the server's answer (succeeded or an error).
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.subscribe_with(json!({"channel": channel})).await
    }

    pub async fn subscribe_with(&mut self, data: Value) -> Value {
        let channel = data["channel"].as_str().unwrap().to_owned();
        self.send(json!({"event": "pusher:subscribe", "data": data}))
            .await;
        loop {
            let frame = self.recv().await;
            let event = frame["event"].as_str().unwrap_or_default();
            if frame["channel"] == channel.as_str()
                && (event == "pusher_internal:subscription_succeeded"
                    || event == "pusher:subscription_error")
            {
                return frame;
            }
            if event == "pusher:error" {
                return frame;
            }
        }
    }

    /// Subscribes to a private channel with a valid signature.
    pub async fn subscribe_private(&mut self, channel: &str) -> Value {
        let auth = signature::authorize_channel(
            KEY,
            &secret(),
            &self.socket_id,
            &ChannelName::new(channel).unwrap(),
            None,
        )
        .unwrap();
        self.subscribe_with(json!({"channel": channel, "auth": auth.auth}))
            .await
    }

    /// Joins a presence channel as `user_id`.
    pub async fn subscribe_presence(&mut self, channel: &str, user_id: &str) -> Value {
        let channel_data =
            json!({"user_id": user_id, "user_info": {"name": format!("user {user_id}")}})
                .to_string();
        let auth = signature::authorize_channel(
            KEY,
            &secret(),
            &self.socket_id,
            &ChannelName::new(channel).unwrap(),
            Some(&channel_data),
        )
        .unwrap();
        self.subscribe_with(
            json!({"channel": channel, "auth": auth.auth, "channel_data": channel_data}),
        )
        .await
    }

    /// Asserts nothing but pings arrives for a short while.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(wait, self.ws.next()).await
        {
            panic!("unexpected frame: {text}");
        }
    }
}

/// A frame's `data`, decoded from its JSON string.
pub fn data_of(frame: &Value) -> Value {
    match &frame["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    }
}

/// Polls until `check` holds (or fails after the deadline).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < until,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `infra-realtime-server` binary running as a child process.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    /// Starts the binary for app 3 on `port` and waits for its "listening" log line.
    pub fn start(port: u16) -> ServerProcess {
        ServerProcess::start_with(port, &[])
    }

    /// Like [`ServerProcess::start`], with more environment variables (a cluster's Redis).
    pub fn start_with(port: u16, env: &[(&str, String)]) -> ServerProcess {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_infra-realtime-server"));
        command.env_clear();
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .env("PUSHER_APP_ID", APP_ID)
            .env("PUSHER_KEY", KEY)
            .env("PUSHER_SECRET", SECRET)
            .env("INFRA_REALTIME_ADDR", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the server binary starts");
        let stdout = child.stdout.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let ready = line.contains("listening on");
                lines.lock().unwrap().push(line);
                if ready {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready_rx
            .recv_timeout(PATIENCE)
            .expect("the server logs its address");
        ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }

    /// Sends SIGTERM and waits for the exit; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let until = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(std::time::Instant::now() < until, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl ServerProcess {
    /// SIGKILL: the process gets no chance to clean up after itself.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
