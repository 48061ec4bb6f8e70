//! Scrubbing of what the Sentry client sends: events (`before_send`), breadcrumbs
//! (`before_breadcrumb`), and — since the sentry crate has no `before_send_transaction` —
//! transactions, scrubbed by a transport wrapper on their way out. Secret-named keys lose
//! their values, texts their credentials, and paths their secret segments
//! ([`scrub_path`](crate::scrub::scrub_path): the key of `/e/{event_key}`).

use std::sync::Arc;
use std::time::Duration;

use sentry::protocol::{
    Context as SentryContext, EnvelopeItem, Event, Map, Request, Span, Transaction, Value,
};
use sentry::{Envelope, Transport, TransportFactory, TransportOptions};

use crate::scrub::{REDACTED, is_secret_key, scrub_path, scrub_text, scrub_value};

/// Strips secrets from every place an event can hold them.
pub(crate) fn scrub_event(mut event: Event<'static>) -> Event<'static> {
    scrub_map(&mut event.extra);
    scrub_contexts(&mut event.contexts);
    if let Some(message) = event.message.as_mut() {
        *message = scrub_text(message);
    }
    if let Some(transaction) = event.transaction.as_mut() {
        *transaction = scrub_text(transaction);
    }
    for exception in event.exception.values.iter_mut() {
        if let Some(value) = exception.value.as_mut() {
            *value = scrub_text(value);
        }
    }
    for crumb in event.breadcrumbs.values.iter_mut() {
        scrub_breadcrumb(crumb);
    }
    if let Some(request) = event.request.as_mut() {
        scrub_request(request);
    }
    scrub_tags(&mut event.tags);
    event
}

/// Strips secrets from a transaction: its name (a raw path when no route matched), its
/// request, its spans and their data, tags, extra and contexts.
pub(crate) fn scrub_transaction(mut transaction: Transaction<'static>) -> Transaction<'static> {
    if let Some(name) = transaction.name.as_mut() {
        *name = scrub_text(name);
    }
    if let Some(request) = transaction.request.as_mut() {
        scrub_request(request);
    }
    scrub_tags(&mut transaction.tags);
    scrub_map(&mut transaction.extra);
    scrub_contexts(&mut transaction.contexts);
    for span in transaction.spans.iter_mut() {
        scrub_span(span);
    }
    transaction
}

pub(crate) fn scrub_breadcrumb(crumb: &mut sentry::Breadcrumb) {
    if let Some(message) = crumb.message.as_mut() {
        *message = scrub_text(message);
    }
    scrub_map(&mut crumb.data);
}

fn scrub_span(span: &mut Span) {
    if let Some(description) = span.description.as_mut() {
        *description = scrub_text(description);
    }
    scrub_tags(&mut span.tags);
    scrub_map(&mut span.data);
}

/// Secret-named keys redacted, every other value scrubbed.
fn scrub_map(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        if is_secret_key(key) {
            *value = Value::String(REDACTED.into());
        } else {
            scrub_value(value);
        }
    }
}

fn scrub_tags(tags: &mut Map<String, String>) {
    for (key, value) in tags.iter_mut() {
        if is_secret_key(key) {
            *value = REDACTED.into();
        } else {
            *value = scrub_text(value);
        }
    }
}

fn scrub_contexts(contexts: &mut Map<String, SentryContext>) {
    for context in contexts.values_mut() {
        match context {
            SentryContext::Other(map) => scrub_map(map),
            SentryContext::Trace(trace) => {
                if let Some(description) = trace.description.as_mut() {
                    *description = scrub_text(description);
                }
                scrub_map(&mut trace.data);
            }
            _ => {}
        }
    }
}

fn scrub_request(request: &mut Request) {
    request.cookies = request.cookies.as_ref().map(|_| REDACTED.to_owned());
    if let Some(url) = request.url.as_mut() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        if url.password().is_some() {
            let _ = url.set_password(Some(REDACTED));
        }
        let path = scrub_path(url.path()).into_owned();
        if path != url.path() {
            url.set_path(&path);
        }
    }
    for (key, value) in request.headers.iter_mut() {
        if is_secret_key(key) {
            *value = REDACTED.into();
        } else {
            *value = scrub_text(value);
        }
    }
    for (key, value) in request.env.iter_mut() {
        if is_secret_key(key) {
            *value = REDACTED.into();
        }
    }
    if let Some(data) = request.data.as_mut() {
        match serde_json::from_str::<Value>(data) {
            Ok(mut json) => {
                scrub_value(&mut json);
                *data = json.to_string();
            }
            Err(_) => *data = scrub_text(data),
        }
    }
    if let Some(query) = request.query_string.as_mut() {
        *query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}={REDACTED}"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
    }
}

/// Makes the transports of [`ScrubbingTransport`]: the inner factory's, wrapped.
pub(crate) struct ScrubbingTransportFactory {
    inner: Arc<dyn TransportFactory>,
}

impl ScrubbingTransportFactory {
    pub(crate) fn new(inner: Arc<dyn TransportFactory>) -> Self {
        ScrubbingTransportFactory { inner }
    }
}

impl TransportFactory for ScrubbingTransportFactory {
    fn create_transport_with_options(&self, options: TransportOptions) -> Arc<dyn Transport> {
        Arc::new(ScrubbingTransport {
            inner: self.inner.create_transport_with_options(options),
        })
    }
}

/// Scrubs the transactions of every envelope before the inner transport sends it (events
/// went through `before_send` already).
struct ScrubbingTransport {
    inner: Arc<dyn Transport>,
}

impl Transport for ScrubbingTransport {
    fn send_envelope(&self, envelope: Envelope) {
        let carries_transaction = envelope
            .items()
            .any(|item| matches!(item, EnvelopeItem::Transaction(_)));
        if !carries_transaction {
            return self.inner.send_envelope(envelope);
        }
        let mut scrubbed = Envelope::new().with_headers(envelope.headers().clone());
        for item in envelope.into_items() {
            match item {
                EnvelopeItem::Transaction(transaction) => {
                    scrubbed.add_item(scrub_transaction(*transaction));
                }
                other => scrubbed.add_item(other),
            }
        }
        self.inner.send_envelope(scrubbed);
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.inner.flush(timeout)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.shutdown(timeout)
    }
}
