//! A webhook receiver in Node that verifies each delivery with the official `pusher` npm SDK's
//! `webhook()` (`tests/compat/webhook_receiver.js`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tokio::sync::mpsc::UnboundedReceiver;

use super::PATIENCE;

/// The receiver script, killed (by its own handle) when the test ends.
pub struct Receiver {
    child: Child,
    lines: UnboundedReceiver<String>,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let compat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
        assert!(
            compat.join("node_modules/pusher").exists(),
            "run `npm ci` in {} first (cargo xtask ci does)",
            compat.display()
        );
        let mut child = Command::new("node")
            .arg(compat.join("webhook_receiver.js"))
            .current_dir(&compat)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut receiver = Receiver {
            child,
            lines,
            port: 0,
        };
        let first = receiver.line().await;
        receiver.port = first
            .strip_prefix("LISTENING ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("expected LISTENING, got {first}"));
        receiver
    }

    /// The next line the script printed: `EVENTS <json>`, `INVALID` or `REFUSED`.
    pub async fn line(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.lines.recv())
            .await
            .expect("the receiver reports within the deadline")
            .expect("the receiver script ended")
    }

    /// The receiver's URL for `path` (`/hooks` verifies, `/refuse` refuses).
    pub fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}{path}", self.port)).unwrap()
    }
}
