//! The `otel` feature end to end: tracing spans reach a local OTLP/HTTP receiver (an axum
//! route decoding `POST /v1/traces` with the OpenTelemetry protobuf definitions).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use infra_core::{Env, ErrorKind};
use infra_monitoring::otel_layer;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    span_id: Vec<u8>,
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

async fn traces(State(spans): State<Spans>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let mut spans = spans.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    parent_span_id: span.parent_span_id,
                    span_id: span.span_id,
                });
            }
        }
    }
    ""
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_to_the_otlp_http_endpoint() {
    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let env = Env::from_pairs([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}/")),
        ("OTEL_SERVICE_NAME", "calendar-agent".to_owned()),
    ]);
    let (layer, guard) = otel_layer(&env).unwrap().expect("an endpoint is set");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let sync = tracing::info_span!("calendar.sync", calendar = "cal-1");
        let _entered = sync.enter();
        tracing::info_span!("calendar.fetch").in_scope(|| tracing::info!("fetched 3 events"));
    });
    // The blocking exporter posts from the SDK's own thread; wait off the runtime's.
    let flushed = tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    assert!(flushed, "the collector took the spans");

    let spans = spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let sync = spans
        .iter()
        .find(|s| s.name == "calendar.sync")
        .expect("the parent span");
    let fetch = spans
        .iter()
        .find(|s| s.name == "calendar.fetch")
        .expect("the child span");
    assert!(
        spans.iter().all(|s| s.service == "calendar-agent"),
        "{spans:?}"
    );
    assert_eq!(fetch.trace_id, sync.trace_id);
    assert_eq!(fetch.parent_span_id, sync.span_id);
    assert!(sync.parent_span_id.is_empty());
}

#[test]
fn unset_means_off_and_a_bad_endpoint_names_its_variable() {
    type Registry = tracing_subscriber::Registry;
    assert!(otel_layer::<Registry>(&Env::empty()).unwrap().is_none());
    for bad in ["localhost:4318", "ftp://collector", "not a url"] {
        let env = Env::from_pairs([("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]);
        let err = otel_layer::<Registry>(&env).err().expect("refused");
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.variable(), Some("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
    }
}
