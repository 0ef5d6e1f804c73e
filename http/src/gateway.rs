//! The API gateway (port 8000, `SHOP_GATEWAY_PORT`): one address for people and browsers, in
//! front of the five services, and the storefront at `/`.
//!
//! | path                          | goes to                              |
//! |-------------------------------|--------------------------------------|
//! | `/api/auth`, `/api/auth/…`    | Auth                                 |
//! | `/api/products…`              | Product                              |
//! | `/api/cart…`                  | Cart                                 |
//! | `/api/orders…`                | Order                                |
//! | `/`, `/static/…`              | the storefront ([`crate::storefront`]) |
//! | `/health`                     | the gateway itself                   |
//! | anything else (Payment, `/internal/…`, `/metrics` of the services) | 404 problem+json |
//!
//! Bodies stream both ways; `Authorization`, `Idempotency-Key`, `traceparent` and every other
//! end-to-end header pass through; each request gets an `X-Request-Id` (the client's, if it sent
//! a sensible one), sent on to the service and back to the client. A service that cannot be
//! reached is a 502, one that does not answer within the timeout (`SHOP_GATEWAY_TIMEOUT_MS`) a
//! 504, both problem+json.
//!
//! In embedded mode the gateway calls the services' routers in-process, handing them the
//! client's address (which the login limits count by); in distributed mode (`shop serve
//! gateway`) it forwards over HTTP to `SHOP_<SERVICE>_URL`, adding `X-Forwarded-For`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shop_services::Service;
use tower::ServiceExt;

use crate::error::ApiError;

/// The header that names a request across the gateway and the service behind it.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Where one service is reached.
#[derive(Clone)]
pub(crate) enum Upstream {
    /// Its router, in this process.
    Local(Router),
    /// Its base URL (`http://host:port`, no trailing slash).
    Remote(String),
}

/// The routing table and how to reach each service.
#[derive(Clone)]
pub(crate) struct Gateway {
    upstreams: Arc<Vec<(Service, Upstream)>>,
    client: reqwest::Client,
    timeout: Duration,
}

/// The services people reach through the gateway, by the path prefix that leads to each.
const ROUTES: [(&str, Service); 4] = [
    ("/api/auth", Service::Auth),
    ("/api/products", Service::Product),
    ("/api/cart", Service::Cart),
    ("/api/orders", Service::Order),
];

/// The service `path` goes to, if any: a prefix matches itself and what lies below it, so
/// `/api/cartx` goes nowhere.
fn route(path: &str) -> Option<Service> {
    ROUTES.iter().find_map(|(prefix, service)| {
        let rest = path.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(*service)
    })
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), and `Host`.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

/// The client's request id if it is a sensible one (1 to 64 visible ASCII characters), else a
/// new one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&REQUEST_ID)
        .filter(|v| (1..=64).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap_or(HeaderValue::from_static("-"))
        })
}

impl Gateway {
    pub(crate) fn new(
        upstreams: Vec<(Service, Upstream)>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        // No overall timeout on the client: the answer's head is awaited within `timeout`, and a
        // body then streams for as long as it takes.
        let client = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30)).build()?;
        Ok(Self { upstreams: Arc::new(upstreams), client, timeout })
    }

    fn upstream(&self, service: Service) -> Option<&Upstream> {
        self.upstreams.iter().find(|(s, _)| *s == service).map(|(_, u)| u)
    }

    /// The gateway's router: the storefront, `/health`, and the services behind it.
    pub(crate) fn router(self) -> Router {
        Router::new()
            .merge(crate::storefront::router())
            .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "UP"})) }))
            .fallback(forward)
            .with_state(self)
    }

    async fn local(&self, service: Service, router: Router, mut req: Request, peer: SocketAddr) -> Response {
        // The service sees the client's address, as if it had been called directly.
        req.extensions_mut().insert(ConnectInfo(peer));
        match tokio::time::timeout(self.timeout, router.oneshot(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(never)) => match never {},
            Err(_) => slow(service, self.timeout),
        }
    }

    async fn remote(&self, service: Service, base: &str, req: Request, peer: SocketAddr) -> Response {
        let (parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        // Headers the client named in `Connection` are for this hop too.
        let listed: Vec<String> = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        let mut headers = HeaderMap::with_capacity(parts.headers.len() + 1);
        for (name, value) in &parts.headers {
            if !hop_by_hop(name) && name != "x-forwarded-for" && !listed.iter().any(|l| l == name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        // The gateway's own view of the client, never the client's claim about itself.
        if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
            headers.insert("x-forwarded-for", v);
        }
        let sent = self
            .client
            .request(parts.method, format!("{base}{target}"))
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
            .send();
        let resp = match tokio::time::timeout(self.timeout, sent).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) if e.is_timeout() => return slow(service, self.timeout),
            Ok(Err(e)) => {
                tracing::warn!(service = service.name(), error = %e, "gateway: service unreachable");
                return ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("the {} service cannot be reached; try again shortly", service.name()),
                )
                .into_response();
            }
            Err(_) => return slow(service, self.timeout),
        };
        let mut out = Response::builder().status(resp.status().as_u16());
        if let Some(h) = out.headers_mut() {
            for (name, value) in resp.headers() {
                if !hop_by_hop(name) {
                    h.append(name.clone(), value.clone());
                }
            }
        }
        out.body(Body::from_stream(resp.bytes_stream())).unwrap_or_else(|e| {
            ApiError::new(StatusCode::BAD_GATEWAY, format!("the {} service's answer: {e}", service.name()))
                .into_response()
        })
    }
}

fn slow(service: Service, timeout: Duration) -> Response {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        format!("the {} service did not answer within {} ms; try again", service.name(), timeout.as_millis()),
    )
    .into_response()
}

/// Everything the storefront does not serve: to its service, or 404.
async fn forward(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let id = request_id(req.headers());
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let path = req.uri().path().to_owned();
    let mut resp = match route(&path).and_then(|s| Some((s, gateway.upstream(s)?.clone()))) {
        Some((service, Upstream::Local(router))) => gateway.local(service, router, req, peer).await,
        Some((service, Upstream::Remote(base))) => gateway.remote(service, &base, req, peer).await,
        None => ApiError::new(StatusCode::NOT_FOUND, format!("no route for {path} here")).into_response(),
    };
    resp.headers_mut().insert(REQUEST_ID, id);
    resp.headers_mut().entry(header::VARY).or_insert(HeaderValue::from_static("authorization"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_public_services_are_routed() {
        assert_eq!(route("/api/auth/login"), Some(Service::Auth));
        assert_eq!(route("/api/products"), Some(Service::Product));
        assert_eq!(route("/api/products/3"), Some(Service::Product));
        assert_eq!(route("/api/cart"), Some(Service::Cart));
        assert_eq!(route("/api/cart/items/2"), Some(Service::Cart));
        assert_eq!(route("/api/orders/7/status"), Some(Service::Order));
        for nowhere in
            ["/api/payments/process", "/internal/carts/ann/checkout", "/api/cartx", "/metrics", "/api"]
        {
            assert_eq!(route(nowhere), None, "{nowhere}");
        }
    }

    #[test]
    fn a_request_id_is_the_clients_only_when_it_is_sensible() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        h.insert(REQUEST_ID, HeaderValue::from_str(&"x".repeat(65)).expect("value"));
        assert_eq!(request_id(&h).len(), 36, "a new uuid");
    }
}
