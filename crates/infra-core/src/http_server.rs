//! Serving an axum router on the internet: the limits `axum::serve` leaves out.
//!
//! [`serve`] accepts connections itself, over hyper's HTTP/1 connection builder, so that
//! every connection has:
//!
//! - a **header-read timeout** (`INFRA_HTTP_HEADER_READ_TIMEOUT`, default 10 s): a client
//!   must send a request's whole head within it, counted from when the server starts waiting
//!   for that request — on a new connection and after each response of a keep-alive one. A
//!   slowloris client (headers sent a byte at a time, or never finished) is closed when it
//!   passes, and so is a keep-alive connection idle that long between requests.
//! - an **idle timeout** (`INFRA_HTTP_IDLE_TIMEOUT`, default 60 s): the longest the server
//!   waits on a client in the middle of a request — no byte of the request body arriving, or
//!   the client reading none of the response. The request body then fails (a handler
//!   buffering it answers 4xx) or the connection is closed. Time spent in a handler is not
//!   counted. An upgraded connection (a WebSocket) is left to its own protocol: neither
//!   timeout applies to it once the server has answered `101 Switching Protocols`.
//! - a **body limit** (`INFRA_HTTP_MAX_BODY_BYTES`, default 8 MiB): a request declaring a
//!   larger `Content-Length` is answered 413 before its body is read, and any body is cut
//!   off at the limit (axum's extractors then answer 413). Routes may bound their bodies
//!   lower, never higher.
//!
//! Each request carries the peer's address as `axum::extract::ConnectInfo<SocketAddr>`,
//! which rate limits key on. Graceful shutdown stops accepting, lets in-flight requests
//! finish, and closes idle keep-alive connections.

mod stall_guards;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::env::Env;
use crate::error::{Error, Result};
use stall_guards::{IdleBody, StalledWriteGuard};

/// The variable bounding the time a client has to send a request's head.
pub const HEADER_READ_TIMEOUT_VAR: &str = "INFRA_HTTP_HEADER_READ_TIMEOUT";
/// The variable bounding how long a request may stall on the client.
pub const IDLE_TIMEOUT_VAR: &str = "INFRA_HTTP_IDLE_TIMEOUT";
/// The variable bounding a request body, in bytes.
pub const MAX_BODY_BYTES_VAR: &str = "INFRA_HTTP_MAX_BODY_BYTES";

/// Header-read timeout unless `INFRA_HTTP_HEADER_READ_TIMEOUT` says otherwise.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle timeout unless `INFRA_HTTP_IDLE_TIMEOUT` says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Body limit unless `INFRA_HTTP_MAX_BODY_BYTES` says otherwise: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How long the accept loop pauses after a failed accept (out of file descriptors), so it
/// does not spin while connections drain.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The limits [`serve`] puts on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpServerConfig {
    /// The time a client has to send a request's head, counted from when the server starts
    /// waiting for it (`INFRA_HTTP_HEADER_READ_TIMEOUT`).
    pub header_read_timeout: Duration,
    /// The longest a request may stall on the client: body bytes not arriving, or the
    /// response not being read (`INFRA_HTTP_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
    /// The largest request body, in bytes (`INFRA_HTTP_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl HttpServerConfig {
    /// Reads `INFRA_HTTP_HEADER_READ_TIMEOUT`, `INFRA_HTTP_IDLE_TIMEOUT` and
    /// `INFRA_HTTP_MAX_BODY_BYTES`; unset ones keep their defaults. Zero is refused: a server
    /// without the limit is what these variables exist to prevent.
    pub fn from_env(env: &Env) -> Result<Self> {
        let mut config = HttpServerConfig::default();
        if let Some(timeout) = env.duration(HEADER_READ_TIMEOUT_VAR)? {
            config.header_read_timeout = positive(HEADER_READ_TIMEOUT_VAR, timeout)?;
        }
        if let Some(timeout) = env.duration(IDLE_TIMEOUT_VAR)? {
            config.idle_timeout = positive(IDLE_TIMEOUT_VAR, timeout)?;
        }
        if let Some(max) = env.integer::<usize>(MAX_BODY_BYTES_VAR)? {
            if max == 0 {
                return Err(Error::config(MAX_BODY_BYTES_VAR, "must be at least 1"));
            }
            config.max_body_bytes = max;
        }
        Ok(config)
    }

    /// Replaces the header-read timeout.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Replaces the idle timeout.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Replaces the body limit.
    pub fn with_max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }
}

fn positive(variable: &str, timeout: Duration) -> Result<Duration> {
    if timeout.is_zero() {
        return Err(Error::config(variable, "must be longer than zero"));
    }
    Ok(timeout)
}

/// Serves `router` on `listener` with `config`'s limits until `shutdown` completes, then
/// stops accepting and waits for the open requests to finish (idle keep-alive connections
/// are closed at once; upgraded WebSockets are the router's to close).
///
/// ```no_run
/// # async fn demo(router: axum::Router) -> infra_core::Result<()> {
/// use infra_core::Env;
/// use infra_core::http_server::{HttpServerConfig, serve};
///
/// let config = HttpServerConfig::from_env(&Env::process())?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await
///     .map_err(|e| infra_core::Error::backend("cannot listen").with_source(e))?;
/// // Stops when `stop` is sent to (a binary would wait for SIGTERM or Ctrl-C instead).
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// serve(listener, router, config, async {
///     let _ = stopped.await;
/// })
/// .await?;
/// # drop(stop);
/// # Ok(()) }
/// ```
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    config: HttpServerConfig,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()> + Send,
{
    // Every connection task holds a receiver; the sender's `closed` is "all of them ended".
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) if is_per_connection(&err) => continue,
            Err(err) => {
                tracing::error!(error = %err, "accepting a connection failed; pausing");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            config,
            stopped.clone(),
        ));
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(true);
    stop.closed().await;
    Ok(())
}

/// Errors that concern one connection only (the client gave up before we accepted).
fn is_per_connection(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    config: HttpServerConfig,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let upgraded = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(StalledWriteGuard::new(
        stream,
        config.idle_timeout,
        Arc::clone(&upgraded),
    ));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        handle(request, router.clone(), peer, config, Arc::clone(&upgraded))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            outcome = connection.as_mut() => {
                if let Err(err) = outcome {
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
                break;
            }
            _ = stopping.changed(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn handle(
    mut request: Request<Incoming>,
    router: Router,
    peer: SocketAddr,
    config: HttpServerConfig,
    upgraded: Arc<AtomicBool>,
) -> std::result::Result<Response<Body>, Infallible> {
    if declared_length(&request).is_some_and(|length| length > config.max_body_bytes as u64) {
        return Ok(payload_too_large(config.max_body_bytes));
    }
    request.extensions_mut().insert(ConnectInfo(peer));
    let request = request.map(|body| {
        Body::new(Limited::new(
            IdleBody::new(body, config.idle_timeout),
            config.max_body_bytes,
        ))
    });
    let response = router.oneshot(request).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        upgraded.store(true, Ordering::Release);
    }
    Ok(response)
}

/// The `Content-Length` a request declares; `None` when absent or unreadable (hyper has
/// already refused a malformed one).
fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn payload_too_large(limit: usize) -> Response<Body> {
    let body = format!(
        "{{\"error\":\"the request body is larger than the {limit}-byte limit ({MAX_BODY_BYTES_VAR})\"}}"
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    // The unread body stays on the wire: the connection cannot serve another request.
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_variables() {
        let config = HttpServerConfig::from_env(&Env::empty()).unwrap();
        assert_eq!(config, HttpServerConfig::default());
        let config = HttpServerConfig::from_env(&Env::from_pairs([
            (HEADER_READ_TIMEOUT_VAR, "2s"),
            (IDLE_TIMEOUT_VAR, "30s"),
            (MAX_BODY_BYTES_VAR, "1024"),
        ]))
        .unwrap();
        assert_eq!(config.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.idle_timeout, Duration::from_secs(30));
        assert_eq!(config.max_body_bytes, 1024);
        for (variable, value) in [
            (HEADER_READ_TIMEOUT_VAR, "0s"),
            (IDLE_TIMEOUT_VAR, "0ms"),
            (MAX_BODY_BYTES_VAR, "0"),
            (MAX_BODY_BYTES_VAR, "lots"),
            (IDLE_TIMEOUT_VAR, "soon"),
        ] {
            let err =
                HttpServerConfig::from_env(&Env::from_pairs([(variable, value)])).unwrap_err();
            assert_eq!(err.variable(), Some(variable), "{variable}={value}");
        }
    }
}
