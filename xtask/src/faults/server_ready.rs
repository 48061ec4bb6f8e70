//! Waiting for a realtime server process the scenarios started.

use std::io::BufRead;
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};

/// Waits (up to 15 s) for `child`'s stdout to say "listening on"; `what` names it in the
/// error. A thread keeps reading stdout afterwards, so the process never blocks on a full pipe.
pub(super) fn wait_until_listening(child: &mut Child, what: &str) -> Result<()> {
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("the {what}'s stdout"))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(15))
        .with_context(|| format!("the {what} did not start listening"))
}
