//! `INFRA_METRICS_ADDR`: the app's Prometheus endpoint and the periodic gauges behind it.
//!
//! [`Infra::from_env`](crate::Infra::from_env) installs the Prometheus recorder when the
//! variable is set — before it builds the services, whose metric handles bind to the
//! recorder installed when they are registered. [`Infra::start`](crate::Infra::start) then
//! binds the listener serving `GET /metrics` and starts the sampler, which refreshes the
//! gauges that need a reading (the pool's state, the queue's depth and lag in one stats
//! query, the realtime hub's counts, the memory cache's size, the process's figures) once
//! per `INFRA_METRICS_INTERVAL`: a scrape only renders what is there, it never queries.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use infra_core::{MetricsConfig, Result};
use tokio::task::JoinHandle;

/// The metrics side of an `Infra`: its settings, the recorder's handle when metrics are on,
/// and, once started, the listener's address and tasks. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct MetricsEndpoint {
    config: MetricsConfig,
    #[cfg(feature = "metrics")]
    handle: Option<infra_core::metrics_exporter::PrometheusHandle>,
    running: Arc<Mutex<Option<Running>>>,
}

struct Running {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Reads the settings and, when `INFRA_METRICS_ADDR` is set, installs the recorder.
    pub(crate) fn from_config(config: MetricsConfig) -> Result<Self> {
        #[cfg(feature = "metrics")]
        {
            let handle = match config.addr {
                Some(_) => Some(infra_core::metrics_exporter::install_prometheus_recorder()?),
                None => None,
            };
            Ok(MetricsEndpoint {
                config,
                handle,
                running: Arc::default(),
            })
        }
        #[cfg(not(feature = "metrics"))]
        {
            if config.enabled() {
                return Err(infra_core::Error::config(
                    infra_core::METRICS_ADDR_VAR,
                    "is set but infra was built without its `metrics` feature",
                ));
            }
            Ok(MetricsEndpoint {
                config,
                running: Arc::default(),
            })
        }
    }

    pub(crate) fn config(&self) -> MetricsConfig {
        self.config
    }

    /// Where `GET /metrics` is served, once started.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.addr)
    }

    /// Binds the listener and starts serving it and the sampler, which calls `sample` once
    /// per interval. Nothing when metrics are off or already started.
    #[cfg(feature = "metrics")]
    pub(crate) async fn start<F, Fut>(&self, sample: F) -> Result<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        use infra_core::metrics_exporter::{bind_metrics, serve_metrics};

        let (Some(addr), Some(handle)) = (self.config.addr, self.handle.clone()) else {
            return Ok(());
        };
        if self.addr().is_some() {
            return Ok(());
        }
        let listener = bind_metrics(addr).await?;
        let bound = listener.local_addr().unwrap_or(addr);
        let serve = tokio::spawn(async move {
            if let Err(err) = serve_metrics(listener, handle, std::future::pending()).await {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        });
        let interval = self.config.interval;
        let sampler = tokio::spawn(async move {
            let mut process = infra_core::ProcessMetrics::new();
            let mut every = tokio::time::interval(interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                process.sample();
                sample().await;
            }
        });
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_some() {
            // Another start won the race: keep its listener.
            serve.abort();
            sampler.abort();
        } else {
            tracing::info!("metrics on http://{bound}/metrics");
            *running = Some(Running {
                addr: bound,
                tasks: vec![serve, sampler],
            });
        }
        Ok(())
    }

    /// Stops the listener and the sampler.
    pub(crate) fn stop(&self) {
        if let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            for task in running.tasks {
                task.abort();
            }
        }
    }
}
