//! The `infra-realtime-server` binary's HTTP limits (issue 19, row 3): connections that never
//! finish their headers are closed after `INFRA_HTTP_HEADER_READ_TIMEOUT`, while WebSockets,
//! upgraded, stay open past it and past `INFRA_HTTP_IDLE_TIMEOUT`.
#![cfg(feature = "server")]

mod server_support;

use std::time::Duration;

use serde_json::json;
use server_support::{Client, ServerProcess, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the server to close a connection; far beyond the 1 s timeout.
const CLOSE_PATIENCE: Duration = Duration::from_secs(30);

fn short_limits() -> Vec<(&'static str, String)> {
    vec![
        ("INFRA_HTTP_HEADER_READ_TIMEOUT", "1s".to_owned()),
        ("INFRA_HTTP_IDLE_TIMEOUT", "1s".to_owned()),
    ]
}

async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(CLOSE_PATIENCE, async {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_after_the_header_read_timeout() {
    let server = ServerProcess::start_with(free_port(), &short_limits());
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /apps/3/channels HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream).await,
            "connection {i} with unfinished headers is still open"
        );
    }
    // Still serving: an unsigned API call is refused, not ignored.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /apps/3/channels HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(CLOSE_PATIENCE, stream.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_websocket_outlives_the_http_timeouts() {
    let server = ServerProcess::start_with(free_port(), &short_limits());
    let mut client = Client::connect(server.addr).await;
    // Three times both timeouts with nothing sent either way (the activity timeout is 120 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    client
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    let pong = client.recv_event("pusher:pong", None).await;
    assert_eq!(pong["event"], "pusher:pong");
}
