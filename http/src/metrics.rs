//! Prometheus metrics, one registry per service (the five services of one process keep separate
//! figures), served at `/metrics` in the text exposition format.
//!
//! Every service counts its requests by route template, method and status, with a latency
//! histogram ([`Metrics::observe`], from the request middleware in [`crate::trace`]). What a
//! service holds besides is read when scraped, by its [`Source`]s: the actor core's own counters
//! and duration buckets (checkouts by outcome, the saga's duration, the relay's lag, live actors,
//! the payment pool), the database connections' counters, the Kafka consumer's lag, and the
//! outbox's backlog (a query). Nothing is counted twice, and a checkout pays for no metric of its
//! own beyond a few atomic adds.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use shop_actors::durations::DurationSnapshot;

// Labels are made for every request: a method is a static name and a route the router's own
// template (a reference count), so counting a request allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Route,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: Route,
}

/// A route template, as the router matched it (`/api/orders/{id}`), or none.
#[derive(Clone, Debug)]
pub(crate) struct Route(Option<MatchedPath>);

impl Route {
    pub(crate) fn of(request: &Request) -> Self {
        Self(request.extensions().get::<MatchedPath>().cloned())
    }

    pub(crate) fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The method's name, for the standard ones; `OTHER` otherwise (labels stay few).
pub(crate) fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// One figure read when scraped: a name, what it means, and its value by label set.
pub(crate) struct Figure {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub values: Vec<(Vec<(&'static str, &'static str)>, Sample)>,
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

pub(crate) enum Sample {
    Value(f64),
    Durations(DurationSnapshot),
}

impl Figure {
    pub(crate) fn counter(name: &'static str, help: &'static str, value: f64) -> Self {
        Self::by(name, help, Kind::Counter, Vec::new(), value)
    }

    pub(crate) fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Self::by(name, help, Kind::Gauge, Vec::new(), value)
    }

    /// A counter or gauge with labels.
    pub(crate) fn by(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: Vec<(&'static str, &'static str)>,
        value: f64,
    ) -> Self {
        Self { name, help, kind, values: vec![(labels, Sample::Value(value))] }
    }

    /// Durations in seconds (name it `…_seconds`).
    pub(crate) fn histogram(name: &'static str, help: &'static str, durations: DurationSnapshot) -> Self {
        Self { name, help, kind: Kind::Histogram, values: vec![(Vec::new(), Sample::Durations(durations))] }
    }
}

/// Reads some of a service's figures at scrape time (a database query, say, or counters).
pub(crate) type Source = Arc<dyn Fn() -> BoxFuture<'static, Vec<Figure>> + Send + Sync>;

/// A source that only reads what is in memory.
pub(crate) fn source(read: impl Fn() -> Vec<Figure> + Send + Sync + 'static) -> Source {
    Arc::new(move || {
        let figures = read();
        Box::pin(async move { figures })
    })
}

/// The figures of the last scrape, which the registry encodes.
#[derive(Default)]
struct Latest(std::sync::Mutex<Vec<Figure>>);

impl std::fmt::Debug for Latest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Latest")
    }
}

#[derive(Debug)]
struct Collected(Arc<Latest>);

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = self.0.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for figure in figures.iter() {
            let kind = match figure.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut family = encoder.encode_descriptor(figure.name, figure.help, None, kind)?;
            for (labels, sample) in &figure.values {
                let mut metric = family.encode_family(labels)?;
                match (figure.kind, sample) {
                    (Kind::Counter, Sample::Value(v)) => ConstCounter::new(*v).encode(metric)?,
                    (Kind::Gauge, Sample::Value(v)) => ConstGauge::new(*v).encode(metric)?,
                    (_, Sample::Durations(d)) => {
                        metric.encode_histogram::<NoLabelSet>(d.sum_seconds, d.count, &d.buckets, None)?
                    }
                    (Kind::Histogram, Sample::Value(_)) => {}
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
    sources: Vec<Source>,
    latest: Arc<Latest>,
    /// One scrape at a time: each reads the sources, then encodes what they read.
    scrape: tokio::sync::Mutex<()>,
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
        let latest = Arc::new(Latest::default());
        registry.register_collector(Box::new(Collected(latest.clone())));
        let scrape = tokio::sync::Mutex::new(());
        Self { inner: Arc::new(Inner { registry, requests, latency, sources, latest, scrape }) }
    }

    /// Reads every source, then encodes the registry in the text exposition format.
    pub(crate) async fn render(&self) -> String {
        let _one = self.inner.scrape.lock().await;
        let read = futures::future::join_all(self.inner.sources.iter().map(|source| source())).await;
        *self.inner.latest.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            read.into_iter().flatten().collect();
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.inner.registry).is_err() {
            tracing::error!("could not encode the metrics");
        }
        text
    }

    /// Counts a request under its route template (`/api/orders/{id}`, never the id itself).
    pub(crate) fn observe(&self, method: &'static str, route: Route, status: u16, seconds: f64) {
        let labels = RequestLabels { method, route, status };
        self.inner.requests.get_or_create(&labels).inc();
        let route = RouteLabels { method, route: labels.route };
        self.inner.latency.get_or_create(&route).observe(seconds);
    }
}

/// `GET /metrics`.
pub(crate) async fn serve(State(metrics): State<Metrics>) -> Response {
    let mut response = metrics.render().await.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
