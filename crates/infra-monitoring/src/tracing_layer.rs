//! tracing → Sentry: errors become events, info and warnings become breadcrumbs.

use sentry::integrations::tracing::{EventFilter, SentryLayer};
use tracing::Level;

/// A `tracing-subscriber` layer sending `error!` as Sentry events and `warn!`/`info!` as
/// breadcrumbs of the next event; `debug!` and `trace!` are ignored.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// tracing_subscriber::registry().with(infra_monitoring::tracing_layer()).init();
/// ```
pub fn tracing_layer<S>() -> SentryLayer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    sentry::integrations::tracing::layer().event_filter(|metadata| match *metadata.level() {
        Level::ERROR => EventFilter::Event,
        Level::WARN | Level::INFO => EventFilter::Breadcrumb,
        _ => EventFilter::Ignore,
    })
}
