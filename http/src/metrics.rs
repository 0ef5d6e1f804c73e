//! Prometheus metrics, one registry per service (the five services of one process keep separate
//! figures), served at `/metrics` in the text exposition format.
//!
//! Every service counts its requests by route template, method and status, with a latency
//! histogram. What a service holds besides (checkouts by outcome, live actors, the payment pool)
//! is read from the actor core's own counters when scraped: nothing is counted twice and a
//! checkout pays for no metric of its own.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// One figure read when scraped: a name, what it means, and its value by label set.
pub(crate) struct Figure {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub values: Vec<(Vec<(&'static str, &'static str)>, u64)>,
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

impl Figure {
    pub(crate) fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self { name, help, kind: Kind::Counter, values: vec![(Vec::new(), value)] }
    }

    pub(crate) fn gauge(name: &'static str, help: &'static str, value: u64) -> Self {
        Self { name, help, kind: Kind::Gauge, values: vec![(Vec::new(), value)] }
    }
}

/// Reads a service's figures at scrape time.
pub(crate) type Source = Arc<dyn Fn() -> Vec<Figure> + Send + Sync>;

struct Sources(Vec<Source>);

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sources({})", self.0.len())
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for source in &self.0 {
            for figure in source() {
                let kind = match figure.kind {
                    Kind::Counter => MetricType::Counter,
                    Kind::Gauge => MetricType::Gauge,
                };
                let mut family = encoder.encode_descriptor(figure.name, figure.help, None, kind)?;
                for (labels, value) in &figure.values {
                    let metric = family.encode_family(labels)?;
                    match figure.kind {
                        Kind::Counter => ConstCounter::new(*value).encode(metric)?,
                        Kind::Gauge => {
                            ConstGauge::new(i64::try_from(*value).unwrap_or(i64::MAX)).encode(metric)?
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A service's registry and its request figures. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl Metrics {
    /// The registry of `service`, with its figures read from `sources` when scraped.
    pub(crate) fn new(service: &'static str, sources: Vec<Source>) -> Self {
        let mut registry =
            Registry::with_prefix_and_labels("shop", [("service".into(), service.into())].into_iter());
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to 8 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 15))
        });
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by route template",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        registry.register_collector(Box::new(Sources(sources)));
        Self { inner: Arc::new(Inner { registry, requests, latency }) }
    }

    /// The registry in the text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.inner.registry).is_err() {
            tracing::error!("could not encode the metrics");
        }
        text
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels { method: method.to_owned(), route: route.to_owned(), status };
        self.inner.requests.get_or_create(&labels).inc();
        let route = RouteLabels { method: labels.method, route: labels.route };
        self.inner.latency.get_or_create(&route).observe(seconds);
    }
}

/// Counts each request under its route template (`/api/orders/{id}`, never the id itself).
pub(crate) async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or("unmatched");
    metrics.observe(method.as_str(), route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub(crate) async fn serve(State(metrics): State<Metrics>) -> Response {
    let mut response = metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
