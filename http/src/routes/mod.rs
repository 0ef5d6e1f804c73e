//! One router per service. Each carries its OpenAPI document (`/openapi.json`, `/docs`),
//! `/health`, and answers unknown paths and methods with problem+json.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::{Extension, Json, Router};
use serde::Serialize;
use tower_http::timeout::RequestBodyDeadlineLayer;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::openapi;
use crate::ops::{self, Ops};

pub mod auth;
pub mod cart;
pub mod order;
pub mod payment;
pub mod product;

/// Which service answers: the one thing `/health` says besides that it is alive.
#[derive(Clone, Copy)]
struct ServiceName(&'static str);

#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(example = "UP")]
    status: &'static str,
    #[schema(example = "order")]
    service: &'static str,
}

/// Alive: the process answers. Says nothing of what it depends on (that is `/ready`).
#[utoipa::path(get, path = "/health", tag = "operations", responses(
    (status = 200, description = "The service is alive.", body = Health),
))]
async fn health(Extension(ServiceName(service)): Extension<ServiceName>) -> Json<Health> {
    Json(Health { status: "UP", service })
}

/// Adds what every service has: its document, `GET /health`, `/ready`, `/metrics`, 404 and 405 as problem+json,
/// each request in its span (request id, trace id; [`crate::trace`]), and the body limits
/// ([`crate::limits`]).
pub(crate) fn finish<S: Clone + Send + Sync + 'static>(
    service: &'static str,
    routes: OpenApiRouter<S>,
    state: S,
    ops: Ops,
) -> Router {
    let operations = OpenApiRouter::new()
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .with_state(ops.clone());
    let (router, doc) = routes.routes(routes!(health)).merge(operations).split_for_parts();
    router
        .merge(openapi::docs(doc))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method")
        })
        .layer(Extension(ServiceName(service)))
        .layer(DefaultBodyLimit::max(crate::limits::BODY_LIMIT))
        .layer(RequestBodyDeadlineLayer::new(crate::limits::BODY_DEADLINE))
        .layer(axum::middleware::from_fn(move |request, next| {
            crate::trace::traced(service, ops.metrics.clone(), request, next)
        }))
        .with_state(state)
}
