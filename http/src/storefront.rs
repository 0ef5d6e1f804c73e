//! The storefront: one page at the gateway's `/`, with its script and style, compiled into the
//! binary (no CDN, no JavaScript build step: `cargo run --release` serves it as it is). The page
//! speaks the same REST API as every other client, through the gateway, and shows the API's
//! problem details in words.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("storefront/index.html");
const SCRIPT: &str = include_str!("storefront/shop.js");
const STYLE: &str = include_str!("storefront/shop.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Everything the page loads is its own: scripts, styles and API calls alike.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                ),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

/// `/` and `/static/…`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset(INDEX, "text/html; charset=utf-8") }))
        .route("/static/shop.js", get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/static/shop.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
}
