//! The standalone Pusher-protocol server: WebSocket and HTTP API on `INFRA_REALTIME_ADDR`
//! (default `127.0.0.1:6001`), apps from `PUSHER_APP_ID` / `PUSHER_KEY` / `PUSHER_SECRET` or
//! `INFRA_REALTIME_APPS_FILE`; with `INFRA_REALTIME_REDIS_URL` or
//! `INFRA_REALTIME_REDIS_CLUSTER_NODES` (feature `server-redis`) it is one node of a cluster
//! sharing that Redis or Redis Cluster (`docs/realtime-server.md`). Connections get the HTTP
//! limits of `INFRA_HTTP_HEADER_READ_TIMEOUT`, `INFRA_HTTP_IDLE_TIMEOUT` and
//! `INFRA_HTTP_MAX_BODY_BYTES` (`infra_core::http_server`). With `INFRA_METRICS_ADDR` set it
//! serves `GET /metrics` (Prometheus text) there, its gauges refreshed every
//! `INFRA_METRICS_INTERVAL` (`docs/metrics.md`). SIGTERM or Ctrl-C closes every
//! connection with a close frame (4200, reconnect) before the process exits.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use infra_core::http_server::{HttpServerConfig, serve};
use infra_core::metrics_exporter::{bind_metrics, install_prometheus_recorder, serve_metrics};
use infra_core::{Env, Error, MetricsConfig, ProcessMetrics};
use infra_realtime::server::{RealtimeServer, ServerConfig};

const DEFAULT_ADDR: &str = "127.0.0.1:6001";
/// How long start-up waits for the cluster's Redis before serving alone.
const CLUSTER_JOIN_WAIT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_target(false).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Env::process())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(env: Env) -> Result<(), Error> {
    let config = ServerConfig::from_env(&env)?.ok_or_else(|| {
        Error::config(
            "PUSHER_APP_ID",
            "is not set (nor INFRA_REALTIME_APPS_FILE): the server needs an app",
        )
    })?;
    let raw_addr = env.optional("INFRA_REALTIME_ADDR");
    let addr: SocketAddr = raw_addr
        .as_deref()
        .unwrap_or(DEFAULT_ADDR)
        .parse()
        .map_err(|_| {
            Error::config(
                "INFRA_REALTIME_ADDR",
                "must be `host:port`, e.g. 127.0.0.1:6001",
            )
        })?;
    let limits = HttpServerConfig::from_env(&env)?;
    let metrics = MetricsConfig::from_env(&env)?;
    // Before the server is built: the handles it registers record into this recorder.
    let prometheus = match metrics.addr {
        Some(_) => Some(install_prometheus_recorder()?),
        None => None,
    };
    let apps: Vec<String> = config.apps.iter().map(|a| a.id.clone()).collect();
    let clustered = config.cluster.is_some();
    let server = RealtimeServer::new(config)?;
    // Joining first means clients of a fresh node see the cluster's events and members from
    // their first frame; a node that cannot reach Redis serves alone and keeps trying.
    if clustered && !server.cluster_ready(CLUSTER_JOIN_WAIT).await {
        tracing::warn!("the cluster's Redis is unreachable; serving this node's clients alone");
    }
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::config(
            "INFRA_REALTIME_ADDR",
            format_args!("cannot listen on {addr}: {e}"),
        )
    })?;
    if let (Some(metrics_addr), Some(handle)) = (metrics.addr, prometheus) {
        let metrics_listener = bind_metrics(metrics_addr).await?;
        let bound = metrics_listener.local_addr().unwrap_or(metrics_addr);
        tracing::info!("metrics on http://{bound}/metrics");
        tokio::spawn(async move {
            if let Err(e) = serve_metrics(metrics_listener, handle, std::future::pending()).await {
                tracing::error!("{e}");
            }
        });
        let sampled = server.clone();
        tokio::spawn(async move {
            let mut process = ProcessMetrics::new();
            let mut every = tokio::time::interval(metrics.interval);
            loop {
                every.tick().await;
                process.sample();
                sampled.record_metrics();
            }
        });
    }
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(address = %local, apps = ?apps, "infra-realtime-server listening on {local}");
    // Stop accepting first, so clients told to reconnect cannot land on this process again;
    // upgraded WebSockets outlive `serve` and are closed right after.
    serve(listener, server.router(), limits, shutdown_signal()).await?;
    tracing::info!("shutting down: closing connections");
    let left = server.shutdown(Duration::from_secs(5)).await;
    if left > 0 {
        tracing::warn!(left, "connections still open at exit");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
