//! `cargo run -p calendar-agent`: the app on `INFRA_EXAMPLE_ADDR` (default 127.0.0.1:3000).

use std::process::ExitCode;
use std::sync::Arc;

use calendar_agent::provider::FakeProvider;
use infra::{Env, Infra};

#[tokio::main]
async fn main() -> ExitCode {
    dotenvy::dotenv().ok();
    let _otel = match init_tracing() {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("calendar-agent: {err}");
            return ExitCode::FAILURE;
        }
    };
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("calendar-agent: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (`RUST_LOG`, default info); with the `otel` feature and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP too (the guard flushes them
/// on exit).
#[cfg(feature = "otel")]
fn init_tracing() -> infra::Result<Option<infra::monitoring::OtelGuard>> {
    use tracing_subscriber::prelude::*;
    let (otel, guard) = match infra::monitoring::otel_layer(&Env::process())? {
        Some((layer, guard)) => (Some(layer), Some(guard)),
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(otel)
        .with(tracing_subscriber::fmt::layer().with_filter(env_filter()))
        .init();
    Ok(guard)
}

/// Logs to stderr (`RUST_LOG`, default info).
#[cfg(not(feature = "otel"))]
fn init_tracing() -> infra::Result<Option<()>> {
    tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .init();
    Ok(None)
}

fn env_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let infra = Arc::new(Infra::from_env(&Env::process())?);
    let app = calendar_agent::start(infra.clone(), Arc::new(FakeProvider::default())).await?;
    let addr = std::env::var("INFRA_EXAMPLE_ADDR")
        .unwrap_or_else(|_| calendar_agent::DEFAULT_ADDR.to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("calendar agent on http://{}/", listener.local_addr()?);
    if let Some(metrics) = infra.metrics_addr() {
        println!("metrics on http://{metrics}/metrics");
    }
    // Header-read and idle timeouts, a body limit, the peer's address for rate limits.
    infra
        .serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    infra.shutdown().await;
    Ok(())
}
