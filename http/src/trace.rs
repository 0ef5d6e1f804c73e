//! Request ids and W3C trace context (`traceparent`), so that one checkout can be followed
//! through the logs of every service it touches.
//!
//! Every request runs in a `request` span carrying its `request_id` (the caller's
//! `X-Request-Id`, or a new one) and its `trace_id` (from the caller's `traceparent`, or a new
//! trace); both go back in the answer's headers. The span also holds the [`TraceContext`]
//! itself, and the service clients ([`crate::clients`]) send it on as the `traceparent` of their
//! calls: the checkout saga runs under the span of the request that asked for it, so the Order
//! service's calls to Cart, Product and Payment carry the checkout's trace.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use shop_actors::trace::Start;
pub use shop_actors::trace::TraceContext;

use crate::metrics::{Metrics, Route, method_name};
use tracing::Instrument;

const REQUEST_ID: &str = "x-request-id";

/// The caller's request id when it is a sensible one (1 to 100 visible ASCII characters).
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=100).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// Runs the request in its `request` span; counts it in the service's metrics; logs its answer
/// (at DEBUG, target `shop_http::trace`) and sends the request id and trace context back. One
/// middleware for both, since both want the route and the time.
pub(crate) async fn traced(
    service: &'static str,
    metrics: Metrics,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let incoming =
        request.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
    let id = request_id(&request);
    let (method, route) = (method_name(request.method()), Route::of(&request));
    let start = Start::after(incoming);
    let span = match &start {
        Start::Known(context) => tracing::info_span!(
            "request",
            service,
            method,
            route = route.as_str(),
            request_id = %id,
            trace_id = %context.trace_hex(),
        ),
        Start::Exported(_) => tracing::info_span!(
            "request",
            service,
            method,
            route = route.as_str(),
            request_id = %id,
            trace_id = tracing::field::Empty,
        ),
    };
    let context = start.begin(&span);
    let mut response = next.run(request).instrument(span.clone()).await;
    metrics.observe(method, route, response.status().as_u16(), started.elapsed().as_secs_f64());
    // Entering the span costs something even for an event that is then filtered out.
    if tracing::enabled!(tracing::Level::DEBUG) {
        span.in_scope(|| {
            tracing::debug!(
                status = response.status().as_u16(),
                micros = started.elapsed().as_micros() as u64,
                "answered"
            )
        });
    }
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&context.header()) {
        headers.insert("traceparent", v);
    }
    response
}
