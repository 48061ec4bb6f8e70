//! tower/axum: a Sentry hub per request, the request on its events, and 5xx responses
//! captured.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::{Request, Response};
use sentry::integrations::tower::{NewSentryLayer, SentryHttpLayer};
use tower::{Layer, Service};

/// The layers to put around an axum router, outermost first:
///
/// ```no_run
/// use axum::{Router, routing::get};
/// let (hub, http, server_errors) = infra_monitoring::request_layers();
/// let app: Router = Router::new()
///     .route("/api/events/{id}", get(|| async { "ok" }))
///     .layer(server_errors)
///     .layer(http)
///     .layer(hub);
/// ```
///
/// - a new hub per request (`NewSentryLayer`), so scopes don't leak between requests;
/// - the request's method, URL and headers on its events, and a transaction per request
///   (`SentryHttpLayer`);
/// - [`CaptureServerErrorsLayer`]: a 5xx response becomes an event tagged with the method,
///   the matched route and the status.
pub fn request_layers<B>() -> (
    NewSentryLayer<Request<B>>,
    SentryHttpLayer,
    CaptureServerErrorsLayer,
) {
    (
        NewSentryLayer::new_from_top(),
        SentryHttpLayer::new().enable_transaction(),
        CaptureServerErrorsLayer,
    )
}

/// Captures 5xx responses as Sentry events.
#[derive(Debug, Clone, Copy, Default)]
pub struct CaptureServerErrorsLayer;

impl<S> Layer<S> for CaptureServerErrorsLayer {
    type Service = CaptureServerErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CaptureServerErrors { inner }
    }
}

/// The service of [`CaptureServerErrorsLayer`].
#[derive(Debug, Clone)]
pub struct CaptureServerErrors<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for CaptureServerErrors<S>
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
        let method = request.method().to_string();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| request.uri().path().to_owned());
        let hub = sentry::Hub::current();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let status = response.status();
            if status.is_server_error() {
                hub.with_scope(
                    |scope| {
                        scope.set_tag("error.area", "api");
                        scope.set_tag("http.method", &method);
                        scope.set_tag("route", &route);
                        scope.set_tag("http.status_code", status.as_u16());
                        scope.set_fingerprint(Some(&["api", &route, "5xx"]));
                    },
                    || {
                        hub.capture_message(
                            &format!("{method} {route} answered {}", status.as_u16()),
                            sentry::Level::Error,
                        )
                    },
                );
            }
            Ok(response)
        })
    }
}
