//! The idle timeout's two halves: a request body that stops arriving, and a client that
//! stops reading the response.

use std::fmt;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::error::BoxError;

/// A timer armed while something waits on the client and disarmed by any progress. One
/// `Sleep` is kept and reset, so a stream of small stalls allocates once.
#[derive(Default)]
struct StallTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl StallTimer {
    /// Progress was made: the next wait starts a fresh period.
    fn disarm(&mut self) {
        self.armed = false;
    }

    /// The caller is waiting: arms the timer on the first wait and says whether `limit` has
    /// passed since. Registers the task to be woken when it does.
    fn expired(&mut self, limit: Duration, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            let deadline = Instant::now() + limit;
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        let sleep = self.sleep.as_mut().expect("armed above");
        if sleep.as_mut().poll(cx).is_ready() {
            self.armed = false;
            return true;
        }
        false
    }
}

/// The error a request body ends with when the client stops sending it.
#[derive(Debug)]
pub(crate) struct RequestBodyStalled {
    after: Duration,
}

impl fmt::Display for RequestBodyStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the client sent no part of the request body for {} ({})",
            crate::format_duration(self.after),
            super::IDLE_TIMEOUT_VAR
        )
    }
}

impl std::error::Error for RequestBodyStalled {}

/// A request body that fails once no frame has arrived for the idle timeout.
pub(crate) struct IdleBody<B> {
    inner: B,
    idle: Duration,
    timer: StallTimer,
}

impl<B> IdleBody<B> {
    pub(crate) fn new(inner: B, idle: Duration) -> Self {
        IdleBody {
            inner,
            idle,
            timer: StallTimer::default(),
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer.disarm();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending if this.timer.expired(this.idle, cx) => {
                Poll::Ready(Some(Err(Box::new(RequestBodyStalled { after: this.idle }))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket: a write (or flush) that cannot make progress for the idle
/// timeout fails, so a client that stops reading its response loses the connection instead
/// of holding it. Off once the connection is upgraded: the upgraded protocol (the realtime
/// server's WebSocket) keeps its own write deadline.
pub(crate) struct StalledWriteGuard<IO> {
    io: IO,
    idle: Duration,
    timer: StallTimer,
    upgraded: Arc<AtomicBool>,
}

impl<IO> StalledWriteGuard<IO> {
    pub(crate) fn new(io: IO, idle: Duration, upgraded: Arc<AtomicBool>) -> Self {
        StalledWriteGuard {
            io,
            idle,
            timer: StallTimer::default(),
            upgraded,
        }
    }

    fn after<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(outcome) => {
                self.timer.disarm();
                Poll::Ready(outcome)
            }
            Poll::Pending if self.upgraded.load(Ordering::Acquire) => Poll::Pending,
            Poll::Pending if self.timer.expired(self.idle, cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read none of the response for {} ({})",
                    crate::format_duration(self.idle),
                    super::IDLE_TIMEOUT_VAR
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for StalledWriteGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for StalledWriteGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.after(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.after(polled, cx)
    }
}
