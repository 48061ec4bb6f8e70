//! The umbrella's HTTP surface against hostile clients (issue 19): `Infra::serve` closes
//! slowloris connections yet keeps WebSockets; the rate limit ignores a client's own
//! `X-Forwarded-For` (point 7); readiness is cheap and coalesced while the full probes stay
//! behind the admin token (point 8).
#![cfg(feature = "http")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use infra::{Env, Infra};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// Waits on the server: generous, since a loaded two-core machine must not fail these.
const PATIENCE: Duration = Duration::from_secs(30);

fn infra(pairs: &[(&str, &str)]) -> Arc<Infra> {
    Arc::new(Infra::from_env_with(&Env::from_pairs(pairs.iter().copied())).unwrap())
}

/// Serves `router` through `Infra::serve` on a free port until the test ends.
async fn serve(infra: &Arc<Infra>, router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let infra = infra.clone();
    tokio::spawn(async move {
        infra
            .serve(listener, router, std::future::pending())
            .await
            .unwrap()
    });
    addr
}

async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// One `Connection: close` request over a fresh socket; the status code.
async fn status_of(addr: SocketAddr, request: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    answer
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infra_serve_closes_slowloris_connections() {
    let infra = infra(&[
        ("INFRA_HTTP_HEADER_READ_TIMEOUT", "1s"),
        ("INFRA_HTTP_IDLE_TIMEOUT", "1s"),
    ]);
    let addr = serve(&infra, infra.router()).await;
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(closed_by_server(stream).await, "connection {i} still open");
    }
    let ok = status_of(
        addr,
        "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(ok, 200);
}

#[cfg(feature = "realtime")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_to_the_embedded_realtime_server_outlives_the_http_timeouts() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let infra = infra(&[
        ("INFRA_HTTP_HEADER_READ_TIMEOUT", "1s"),
        ("INFRA_HTTP_IDLE_TIMEOUT", "1s"),
    ]);
    let addr = serve(&infra, infra.router()).await;
    let key = infra.realtime_service().credentials().key.clone();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/app/{key}?protocol=7"))
        .await
        .expect("the upgrade goes through Infra::serve");
    let established = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        established
            .to_text()
            .unwrap()
            .contains("connection_established"),
        "{established:?}"
    );
    // Three times both HTTP timeouts, nothing sent either way (activity timeout: 120 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.send(Message::text(r#"{"event":"pusher:ping","data":{}}"#))
        .await
        .unwrap();
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("an answer")
            .expect("the WebSocket is still open")
            .unwrap();
        if let Message::Text(text) = frame {
            assert!(text.contains("pusher:pong"), "{text}");
            break;
        }
    }
}

/// Point 7: a client writing a fresh `X-Forwarded-For` per request must not escape the limit.
#[cfg(all(feature = "cache", feature = "jobs"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_ignores_a_client_written_forwarded_for() {
    let infra = infra(&[("INFRA_JOBS_INGEST_KEYS", "key-1")]);
    infra.start().await.unwrap();
    let app = infra
        .routes()
        .rate_limit(3, Duration::from_secs(60))
        .build();
    let addr = serve(&infra, app).await;
    let body = r#"{"name":"app/probe.sent","data":{}}"#;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let request = format!(
            "POST /e/key-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             X-Forwarded-For: 198.51.100.{i}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        statuses.push(status_of(addr, &request).await);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
}

/// Point 7: behind proxies named in `INFRA_TRUSTED_PROXIES`, their `X-Forwarded-For` counts.
#[cfg(all(feature = "cache", feature = "jobs"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_budget() {
    let infra = infra(&[
        ("INFRA_JOBS_INGEST_KEYS", "key-1"),
        ("INFRA_TRUSTED_PROXIES", "127.0.0.0/8"),
    ]);
    infra.start().await.unwrap();
    let app = infra
        .routes()
        .rate_limit(1, Duration::from_secs(60))
        .build();
    let addr = serve(&infra, app).await;
    let body = r#"{"name":"app/probe.sent","data":{}}"#;
    let send = |xff: &'static str| {
        let request = format!(
            "POST /e/key-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             X-Forwarded-For: {xff}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        async move { status_of(addr, &request).await }
    };
    assert_eq!(send("203.0.113.1").await, 200);
    assert_eq!(send("203.0.113.2").await, 200);
    // The first client again, with its own forged entry in front of the proxy's.
    assert_eq!(send("192.0.2.77, 203.0.113.1").await, 429);
}

/// Point 7: served without the peer address, the limit refuses instead of pooling every
/// client under one key (where one client's requests would use up everyone's budget).
#[cfg(all(feature = "cache", feature = "jobs"))]
#[tokio::test]
async fn without_the_peer_address_clients_are_not_pooled_into_one_bucket() {
    let infra = infra(&[("INFRA_JOBS_INGEST_KEYS", "key-1")]);
    infra.start().await.unwrap();
    let app = infra
        .routes()
        .rate_limit(1, Duration::from_secs(60))
        .build();
    let send = || {
        let app = app.clone();
        async move {
            app.oneshot(
                Request::post("/e/key-1")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"name":"app/probe.sent","data":{}}"#))
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
        }
    };
    // Two requests of unknown origin: refused as a server misconfiguration, never counted
    // against a budget they would share with every other client.
    assert_eq!(send().await, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(send().await, StatusCode::INTERNAL_SERVER_ERROR);
}

/// A TCP proxy in front of the shared Redis that counts the commands passing through.
#[cfg(feature = "cache")]
struct CountingRedisProxy {
    addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
}

#[cfg(feature = "cache")]
impl CountingRedisProxy {
    async fn start() -> CountingRedisProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut redis = TcpStream::connect("127.0.0.1:6379").await.unwrap();
                    let (mut from_client, mut to_client) = client.split();
                    let (mut from_redis, mut to_redis) = redis.split();
                    let upstream = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match from_client.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            record.lock().unwrap().extend_from_slice(&buf[..n]);
                            if to_redis.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut from_redis, &mut to_client);
                    tokio::select! {
                        () = upstream => {}
                        _ = downstream => {}
                    }
                });
            }
        });
        CountingRedisProxy { addr, seen }
    }

    /// How many times `command` was sent (as a RESP bulk string).
    fn count(&self, command: &str) -> usize {
        let needle = format!("${}\r\n{command}\r\n", command.len());
        let seen = self.seen.lock().unwrap();
        seen.windows(needle.len())
            .filter(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
            .count()
    }
}

/// Point 8: a flood of readiness requests costs one cheap probe, not a full one each.
#[cfg(all(feature = "cache", feature = "jobs"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_cheap_and_coalesced_and_the_full_probe_needs_the_token() {
    let proxy = CountingRedisProxy::start().await;
    let redis_url = format!("redis://{}", proxy.addr);
    let infra = infra(&[
        ("REDIS_URL", redis_url.as_str()),
        ("INFRA_JOBS_BACKEND", "memory"),
        ("INFRA_ADMIN_TOKEN", "op-token"),
        ("INFRA_READINESS_CACHE_TTL", "30s"),
    ]);
    infra.start().await.unwrap();
    let app = infra.router();
    let probe_jobs_before = probe_jobs_run(&infra).await;
    let requests = (0..50).map(|_| {
        let app = app.clone();
        async move {
            app.oneshot(
                Request::get("/api/health/ready")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
        }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    for full_probe_command in ["SET", "GET", "DEL", "INFO", "DBSIZE"] {
        assert_eq!(
            proxy.count(full_probe_command),
            0,
            "readiness sent {full_probe_command} to Redis"
        );
    }
    assert_eq!(proxy.count("PING"), 1, "one probe answered every request");
    assert_eq!(
        probe_jobs_run(&infra).await,
        probe_jobs_before,
        "readiness ran probe jobs"
    );

    // The end-to-end probes are the admin route's, behind the token.
    let full = app
        .oneshot(
            Request::get("/api/test-infrastructure")
                .header(header::AUTHORIZATION, "Bearer op-token")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    assert!(proxy.count("SET") >= 1, "the full probe writes its key");
    assert!(probe_jobs_run(&infra).await > probe_jobs_before);
}

/// Attempts the runtime made at the built-in health probe's jobs.
#[cfg(feature = "jobs")]
async fn probe_jobs_run(infra: &Infra) -> u64 {
    let stats = infra.jobs().runtime().stats().await.unwrap();
    stats
        .function(infra::jobs::PROBE_FUNCTION_ID)
        .map_or(0, |f| f.runs.attempts)
}
