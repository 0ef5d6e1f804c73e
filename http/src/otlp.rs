//! OpenTelemetry export of the request and event spans over OTLP (protobuf over HTTP), when
//! `SHOP_OTLP_ENDPOINT` is set (`http://collector:4318`). Unset, none of this is built: no layer,
//! no exporter thread, nothing in the way of a request.
//!
//! The spans keep the ids the trace context already gives them: a request span continues the
//! caller's `traceparent` (its remote parent), and the id the exporter gives the span is the
//! one sent on to Cart, Product, Payment and into the Kafka record's header, so a collector
//! sees one tree per checkout.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use shop_actors::trace::TraceContext;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The running exporter; [`Otlp::shutdown`] sends what is still batched.
pub struct Otlp {
    provider: SdkTracerProvider,
}

impl Otlp {
    /// Exports to `endpoint` (its `/v1/traces`) as `service_name`. Builds the HTTP client, so
    /// call it outside the async runtime.
    pub fn start(endpoint: &str, service_name: &str) -> Result<(Self, Tracer), String> {
        let endpoint = endpoint.trim_end_matches('/');
        let url = if endpoint.ends_with("/v1/traces") {
            endpoint.to_owned()
        } else {
            format!("{endpoint}/v1/traces")
        };
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| format!("SHOP_OTLP_ENDPOINT {endpoint:?}: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service_name.to_owned()).build())
            .build();
        let tracer = provider.tracer("shop");
        shop_actors::trace::export_with(join);
        Ok((Self { provider }, tracer))
    }

    /// Exports the spans still batched (at most a few seconds), then stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("shop: OTLP export at shutdown: {e}");
        }
    }
}

/// The span continues `incoming` (a remote parent), and the trace context takes the exported
/// span's own ids.
fn join(span: &Span, incoming: Option<TraceContext>) -> TraceContext {
    if let Some(parent) = incoming {
        let flags = if parent.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id.to_be_bytes()),
            SpanId::from_bytes(parent.span_id.to_be_bytes()),
            flags,
            true,
            TraceState::default(),
        );
        // Refused only for a span that has started already; these are new.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let exported = span.context().span().span_context().clone();
    if !exported.is_valid() {
        // The span is not exported (filtered out): the context goes on as without OTLP.
        return incoming.map_or_else(TraceContext::root, |c| c.child());
    }
    TraceContext {
        trace_id: u128::from_be_bytes(exported.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(exported.span_id().to_bytes()),
        sampled: exported.is_sampled(),
    }
}
