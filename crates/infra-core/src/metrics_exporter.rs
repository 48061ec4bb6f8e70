//! The Prometheus side of the `metrics` facade: the process-wide recorder and the listener
//! serving `GET /metrics` (feature `metrics-exporter`).
//!
//! The crates record through the `metrics` facade with handles they register once, when
//! they are built; a handle registered before a recorder is installed stays a no-op. So an
//! app installs the recorder ([`install_prometheus_recorder`]) *before* it builds its
//! services — `Infra::from_env` and the standalone realtime server do that when
//! `INFRA_METRICS_ADDR` is set — and then serves it with [`serve_metrics`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
pub use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::metrics_config::METRICS_ADDR_VAR;

/// Histogram buckets, in seconds, for every `_seconds` histogram: from a memory-cache-fast
/// half millisecond to a minute-long job run.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How often the recorder's histograms are compacted when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<std::result::Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, once; later calls
/// return the same handle. Fails when another recorder was installed first.
///
/// Install it before building the services: the handles they register while being built
/// record into whichever recorder is installed at that moment.
pub fn install_prometheus_recorder() -> Result<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .map_err(|err| format!("the histogram buckets are refused: {err}"))?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|_| "another metrics recorder is already installed".to_owned())?;
            Ok(handle)
        })
        .clone()
        .map_err(|problem| Error::config(METRICS_ADDR_VAR, problem))
}

/// The installed Prometheus recorder, if [`install_prometheus_recorder`] succeeded.
pub fn prometheus_handle() -> Option<PrometheusHandle> {
    RECORDER.get().and_then(|r| r.as_ref().ok()).cloned()
}

/// Binds `addr` for the metrics listener; a failure names `INFRA_METRICS_ADDR`.
pub async fn bind_metrics(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|err| {
        Error::config(
            METRICS_ADDR_VAR,
            format_args!("names {addr}, which cannot be bound: {err}"),
        )
    })
}

/// The metrics router: `GET /metrics` answers the text exposition; every other path 404.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                handle.run_upkeep();
                (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}

/// Serves [`metrics_router`] on `listener` until `shutdown` completes, compacting the
/// recorder's histograms every few seconds meanwhile.
pub async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let upkeep = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        })
    };
    let served = axum::serve(listener, metrics_router(handle))
        .with_graceful_shutdown(shutdown)
        .await;
    upkeep.abort();
    served.map_err(|err| Error::unavailable(format!("the metrics listener failed: {err}")))
}
