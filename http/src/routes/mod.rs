//! One router per service. Each carries `/health` and answers unknown paths and methods with
//! problem+json.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use crate::error::ApiError;

pub mod auth;
pub mod cart;
pub mod order;
pub mod payment;
pub mod product;

/// Adds what every service has: `GET /health`, 404 and 405 as problem+json, request tracing.
pub fn finish<S: Clone + Send + Sync + 'static>(
    service: &'static str,
    router: Router<S>,
    state: S,
) -> Router {
    router
        .route(
            "/health",
            get(move || async move { axum::Json(json!({ "status": "UP", "service": service })) }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method")
        })
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
