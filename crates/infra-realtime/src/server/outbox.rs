//! A connection's outgoing frames: bounded in frames and in bytes, so a client that stops
//! reading costs a bounded amount of memory before it is disconnected.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

/// Why a frame did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    Frames,
    Bytes,
}

/// The side the hub pushes to, under its lock: never waits.
pub(crate) struct Outbox {
    tx: mpsc::Sender<Utf8Bytes>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The side the connection's task sends from.
pub(crate) struct OutboxReceiver {
    rx: mpsc::Receiver<Utf8Bytes>,
    bytes: Arc<AtomicUsize>,
}

/// An outbox holding at most `frames` frames and `max_bytes` bytes (one frame always fits in
/// an empty outbox, whatever its size).
pub(crate) fn outbox(frames: usize, max_bytes: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(frames.max(1));
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            bytes: bytes.clone(),
            max_bytes,
        },
        OutboxReceiver { rx, bytes },
    )
}

impl Outbox {
    /// Queues a frame, or says which bound it would pass. A closed outbox (the connection is
    /// ending) takes frames and drops them.
    pub fn push(&self, frame: Utf8Bytes) -> Result<(), Overflow> {
        let len = frame.len();
        let before = self.bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.max_bytes {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(Overflow::Bytes);
        }
        match self.tx.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.bytes.fetch_sub(len, Ordering::AcqRel);
                Err(Overflow::Frames)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.bytes.fetch_sub(len, Ordering::AcqRel);
                Ok(())
            }
        }
    }
}

impl OutboxReceiver {
    /// The next frame; `None` once the hub forgot the connection.
    pub async fn recv(&mut self) -> Option<Utf8Bytes> {
        let frame = self.rx.recv().await?;
        self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }

    /// The next frame if one is queued (tests look at what a socket was sent).
    #[cfg(test)]
    pub fn try_recv(&mut self) -> Option<Utf8Bytes> {
        let frame = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_frames_and_bytes() {
        let frame = |n: usize| Utf8Bytes::from("x".repeat(n));
        let (queue, mut rx) = outbox(3, 100);
        assert_eq!(queue.push(frame(60)), Ok(()));
        assert_eq!(queue.push(frame(50)), Err(Overflow::Bytes));
        assert_eq!(queue.push(frame(30)), Ok(()));
        assert_eq!(queue.push(frame(5)), Ok(()));
        assert_eq!(queue.push(frame(1)), Err(Overflow::Frames));
        assert_eq!(rx.recv().await.unwrap().len(), 60);
        assert_eq!(queue.push(frame(50)), Ok(()), "room again");
        // One frame larger than the bound still goes to an idle client.
        let (big, mut rx) = outbox(3, 10);
        assert_eq!(big.push(frame(20)), Ok(()));
        assert_eq!(big.push(frame(1)), Err(Overflow::Bytes));
        assert_eq!(rx.recv().await.unwrap().len(), 20);
        drop(rx);
        assert_eq!(big.push(frame(1)), Ok(()), "a closed outbox drops frames");
    }
}
