//! OpenTelemetry: tracing spans exported over OTLP (HTTP/protobuf), configured by the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME` variables.

use infra_core::{Env, Error, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The collector's base URL (`/v1/traces` is appended, as the OTLP spec says).
pub const OTEL_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The `service.name` resource attribute.
pub const OTEL_SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
/// The service name when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_OTEL_SERVICE_NAME: &str = "infra";

/// Owns the tracer provider: [`shutdown`](OtelGuard::shutdown) (or dropping the guard)
/// exports the spans still queued.
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelGuard").finish_non_exhaustive()
    }
}

impl OtelGuard {
    /// Exports what is queued now; `true` when the collector took it.
    pub fn flush(&self) -> bool {
        self.provider.force_flush().is_ok()
    }

    /// Exports what is queued and stops the exporter.
    pub fn shutdown(self) -> bool {
        self.provider.shutdown().is_ok()
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        // Already shut down by `shutdown`: the second call only reports that.
        let _ = self.provider.shutdown();
    }
}

/// A `tracing-subscriber` layer exporting spans to `OTEL_EXPORTER_OTLP_ENDPOINT`, with the
/// guard that flushes them; `None` when the variable is unset. A value that is not an
/// `http(s)` URL is a `Config` error naming the variable.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// let env = infra_core::Env::process();
/// let otel = infra_monitoring::otel_layer(&env)?;
/// let (layer, _guard) = match otel {
///     Some((layer, guard)) => (Some(layer), Some(guard)),
///     None => (None, None),
/// };
/// tracing_subscriber::registry().with(layer).init();
/// # Ok::<(), infra_core::Error>(())
/// ```
pub fn otel_layer<S>(env: &Env) -> Result<Option<(impl Layer<S>, OtelGuard)>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(endpoint) = env.optional(OTEL_ENDPOINT_VAR) else {
        return Ok(None);
    };
    let base = url::Url::parse(endpoint.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            Error::config(
                OTEL_ENDPOINT_VAR,
                "must be the collector's http(s) URL, such as http://127.0.0.1:4318",
            )
        })?;
    let traces = format!("{}/v1/traces", base.as_str().trim_end_matches('/'));
    let service = env
        .optional(OTEL_SERVICE_NAME_VAR)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_OTEL_SERVICE_NAME.to_owned());
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces)
        .build()
        .map_err(|e| Error::config(OTEL_ENDPOINT_VAR, format_args!("exporter: {e}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("infra");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, OtelGuard { provider })))
}
