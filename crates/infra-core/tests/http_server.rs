//! `http_server::serve` against hostile clients over real sockets: unfinished headers, idle
//! keep-alive connections, oversized and stalled bodies, clients that stop reading; and the
//! peer address and graceful shutdown ordinary clients rely on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use infra_core::http_server::{HttpServerConfig, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Generous waits: a loaded two-core machine must not fail these.
const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<infra_core::Result<()>>,
}

async fn start(router: Router, config: HttpServerConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(listener, router, config, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        done,
    }
}

fn short_timeouts() -> HttpServerConfig {
    HttpServerConfig::default()
        .with_header_read_timeout(Duration::from_secs(1))
        .with_idle_timeout(Duration::from_secs(1))
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
}

/// Reads until the server closes the connection (EOF or reset); `false` if it stays open
/// for `PATIENCE`.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    waited.is_ok()
}

/// Sends one request and reads one response head and body (`Content-Length` framed).
async fn exchange(stream: &mut TcpStream, request: &str) -> (u16, String) {
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("the server answers")
            .unwrap();
        assert!(n > 0, "the server closed before answering");
        raw.extend_from_slice(&buf[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status: u16 = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while raw.len() < head_end + length {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("the body arrives")
            .unwrap();
        assert!(n > 0, "the server closed mid-body");
        raw.extend_from_slice(&buf[..n]);
    }
    (
        status,
        String::from_utf8_lossy(&raw[head_end..head_end + length]).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_headers_are_closed() {
    let server = start(app(), short_timeouts()).await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // One connection that sends nothing at all.
    slow.push(TcpStream::connect(server.addr).await.unwrap());
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream).await,
            "connection {i} is still open"
        );
    }
    // The server still serves everyone else.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let (status, body) = exchange(&mut stream, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let server = start(app(), short_timeouts()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..2 {
        let (status, _) = exchange(&mut stream, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status, 200, "keep-alive serves several requests");
    }
    assert!(closed_by_server(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_sent() {
    let server = start(app(), short_timeouts().with_max_body_bytes(1024)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Only the head goes out: the answer must not wait for 100 000 bytes.
    let (status, body) = exchange(
        &mut stream,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413);
    assert!(body.contains("INFRA_HTTP_MAX_BODY_BYTES"), "{body}");
    // Within the limit, the same route works.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let (status, body) = exchange(
        &mut stream,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_cut_off() {
    let server = start(app(), short_timeouts().with_max_body_bytes(1024)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let chunk = "a".repeat(600);
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (status, _) = exchange(&mut stream, &request).await;
    assert_eq!(status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_fails_after_the_idle_timeout() {
    let server = start(app(), short_timeouts()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let (status, _) = exchange(
        &mut stream,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten..",
    )
    .await;
    assert_eq!(status, 400, "the handler's body read failed");
    assert!(closed_by_server(&mut stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_the_response_is_disconnected() {
    /// Set when the response body is dropped: the server gave up on the connection.
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let router = Router::new().route(
        "/big",
        get(move || {
            let guard = Dropped(flag.clone());
            async move {
                // Far more than the socket buffers hold, produced as fast as it is sent.
                let chunks = futures::stream::iter((0..100_000).map(move |_| {
                    let _ = &guard;
                    Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024]))
                }));
                Body::from_stream(chunks)
            }
        }),
    );
    let server = start(router, short_timeouts()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read. The server must give up on its own.
    let given_up = tokio::time::timeout(PATIENCE, async {
        while !dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        given_up.is_ok(),
        "the server still writes to a client that reads nothing"
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_the_peer_address() {
    let server = start(app(), HttpServerConfig::default()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (status, body) = exchange(&mut stream, "GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((status, body), (200, local.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_flight_finish_and_closes_idle_connections() {
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let router = Router::new().route(
        "/slow",
        get(move || {
            let entered_tx = entered_tx.clone();
            let gate = gate.clone();
            async move {
                let released = gate.notified();
                let _ = entered_tx.send(());
                released.await;
                "done"
            }
        }),
    );
    let mut server = start(router, HttpServerConfig::default()).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, entered.recv())
        .await
        .expect("the request reaches its handler");
    server.stop.take().unwrap().send(()).unwrap();
    assert!(closed_by_server(&mut idle).await);
    release.notify_one();
    let (status, body) = read_response(&mut busy).await;
    assert_eq!((status, body.as_str()), (200, "done"));
    tokio::time::timeout(PATIENCE, &mut server.done)
        .await
        .expect("serve returns once the connections are done")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting"
    );
}
