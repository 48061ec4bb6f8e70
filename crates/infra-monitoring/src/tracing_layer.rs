//! tracing → Sentry: errors become events, info and warnings become breadcrumbs.

use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer, SpanLayer};
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, filter_fn};

/// A `tracing-subscriber` layer sending `error!` as Sentry events and `warn!`/`info!` as
/// breadcrumbs of the next event; `debug!` and `trace!` are ignored.
///
/// It is sentry's `SpanLayer` (info and above: spans become transactions when
/// `SENTRY_TRACES_SAMPLE_RATE` samples them), `BreadcrumbLayer` (info, warn) and `ErrorLayer`
/// (error), in that order, so the breadcrumbs logged before an error are on its event.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// tracing_subscriber::registry().with(infra_monitoring::tracing_layer()).init();
/// ```
pub fn tracing_layer<S>() -> Vec<Box<dyn Layer<S> + Send + Sync + 'static>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // A `Vec`, not `and_then`: joined with `and_then`, these per-layer filters let no
    // event through (tests/integrations.rs catches it); tracing-subscriber's `Vec` layer
    // registers each filter with the subscriber.
    vec![
        SpanLayer::new().with_filter(LevelFilter::INFO).boxed(),
        BreadcrumbLayer::new()
            .with_filter(filter_fn(|metadata| {
                metadata.is_span() || matches!(*metadata.level(), Level::WARN | Level::INFO)
            }))
            .boxed(),
        ErrorLayer::new().with_filter(LevelFilter::ERROR).boxed(),
    ]
}
