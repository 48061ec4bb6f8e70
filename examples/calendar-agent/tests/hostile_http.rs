//! The `calendar-agent` binary against a slowloris client (issue 19, row 3): connections
//! that never finish their headers are closed after `INFRA_HTTP_HEADER_READ_TIMEOUT`, and the
//! app keeps serving everyone else.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::TestDatabase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the test waits for the server; far beyond the 1 s timeouts it configures.
const PATIENCE: Duration = Duration::from_secs(60);

/// The app as a child process, killed (by its own handle) when dropped.
struct App {
    child: Child,
    addr: String,
}

impl App {
    fn start(database_url: &str) -> App {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_calendar-agent"))
            .env_clear()
            .env("DATABASE_URL", database_url)
            .env("INFRA_JOBS_BACKEND", "memory")
            .env("INFRA_EXAMPLE_ADDR", format!("127.0.0.1:{port}"))
            .env("INFRA_HTTP_HEADER_READ_TIMEOUT", "1s")
            .env("INFRA_HTTP_IDLE_TIMEOUT", "1s")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the calendar-agent binary starts");
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("calendar agent on http://") {
                    let _ = ready_tx.send(url.trim_end_matches('/').to_owned());
                }
            }
        });
        let addr = ready_rx
            .recv_timeout(PATIENCE)
            .expect("the app prints its address");
        App { child, addr }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_to_the_app_are_closed_after_the_header_read_timeout() {
    let database = TestDatabase::create("hostile_http").await;
    let app = App::start(&database.url());
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(&app.addr).await.unwrap();
        stream
            .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let mut open = 0;
    for stream in &mut slow {
        if !closed_by_server(stream).await {
            open += 1;
            break;
        }
    }
    // The app still answers a whole request.
    let mut stream = TcpStream::connect(&app.addr).await.unwrap();
    stream
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let answered = tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer)).await;
    drop(app);
    database.drop_now().await;
    assert_eq!(
        open, 0,
        "a connection with unfinished headers is still open"
    );
    assert!(answered.is_ok(), "the app did not answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
