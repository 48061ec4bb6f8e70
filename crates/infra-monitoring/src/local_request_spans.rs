//! tower/axum for the local sink: each request is a span (`op` `http.server`) written as a
//! JSON line, current while its handler runs, so an event the handler sends carries the
//! request's trace and the job it triggers continues it. With Sentry the layer does
//! nothing: `request_layers` make requests transactions there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::{Request, Response};
use infra_core::TraceContext;
use serde_json::json;
use tower::{Layer, Service};

use crate::local_sink::LocalSink;
use crate::local_trace::{CURRENT, LocalSpan};
use crate::monitoring::{Backend, Monitoring};

impl Monitoring {
    /// The layer recording requests as spans of the local sink (a no-op on Sentry).
    pub fn local_request_spans(&self) -> LocalRequestSpansLayer {
        LocalRequestSpansLayer {
            sink: match &self.backend {
                Backend::Local(sink) => Some(sink.clone()),
                #[cfg(feature = "sentry")]
                Backend::Sentry(_) => None,
            },
        }
    }
}

/// Records each request as a span of the local sink; see the module docs.
#[derive(Clone, Default)]
pub struct LocalRequestSpansLayer {
    sink: Option<Arc<LocalSink>>,
}

impl std::fmt::Debug for LocalRequestSpansLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRequestSpansLayer")
            .field("active", &self.sink.is_some())
            .finish()
    }
}

impl<S> Layer<S> for LocalRequestSpansLayer {
    type Service = LocalRequestSpans<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LocalRequestSpans {
            inner,
            sink: self.sink.clone(),
        }
    }
}

/// The service of [`LocalRequestSpansLayer`].
#[derive(Clone)]
pub struct LocalRequestSpans<S> {
    inner: S,
    sink: Option<Arc<LocalSink>>,
}

impl<S, B, R> Service<Request<B>> for LocalRequestSpans<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(sink) = self.sink.clone() else {
            return Box::pin(self.inner.call(request));
        };
        let method = request.method().to_string();
        // The route template, never the path itself: paths can carry ids and keys.
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned());
        let parent = request
            .headers()
            .get("sentry-trace")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::from_sentry_trace);
        let name = format!("{method} {}", route.as_deref().unwrap_or("(unmatched)"));
        let mut span = LocalSpan::start(
            sink,
            "http.server",
            name,
            parent.as_ref(),
            json!({ "http.request.method": method, "http.route": route }),
        );
        let future = CURRENT.sync_scope(span.trace().clone(), || self.inner.call(request));
        let trace = span.trace().clone();
        Box::pin(async move {
            let result = CURRENT.scope(trace, future).await;
            let status = match &result {
                Ok(response) => {
                    let code = response.status();
                    span.set_data("http.response.status_code", code.as_u16().into());
                    if code.is_server_error() {
                        "internal_error"
                    } else {
                        "ok"
                    }
                }
                Err(_) => "internal_error",
            };
            span.end(status);
            result
        })
    }
}
