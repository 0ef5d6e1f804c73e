use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Json, Router};
use serde::Deserialize;
use shop_services::auth::{JwtKeys, Role};
use shop_services::history::OrderHistory;
use shop_services::order::{OrderService, OrderView};

use crate::error::ApiResult;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::{AdminOnly, ApiJson, ApiPath, ApiQuery, Authorized, Caller, Id, IdempotencyKeyHeader};
use crate::openapi::{self, *};
use crate::paging::{self, PageQuery};

#[derive(Clone, FromRef)]
pub struct OrderState {
    pub orders: OrderService,
    pub keys: JwtKeys,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    /// The next status: SHIPPED after PAID, DELIVERED after SHIPPED.
    #[schema(value_type = shop_actors::model::OrderStatus, example = "SHIPPED")]
    status: String,
}

pub(crate) fn router(state: OrderState, ops: crate::ops::Ops) -> Router {
    let routes = OpenApiRouter::with_openapi(openapi::base("order", "Orders and the checkout saga."))
        .routes(routes!(list, place))
        .routes(routes!(show))
        .routes(routes!(history))
        .routes(routes!(set_status));
    super::finish("order", routes, state, ops)
}

/// Checks the caller's cart out: the order, its stock and its payment, PAID or CANCELLED.
#[utoipa::path(post, path = "/api/orders", tag = "order", security(("bearer" = [])), params(
    ("Idempotency-Key" = Option<String>, Header, description = "The same key answers the same order (1 to 255 visible ASCII characters)."),
), responses(
    (status = 201, description = "The order, PAID or CANCELLED with the gateway's reason.", body = OrderView),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 409, response = Conflict), (status = 503, response = Unavailable),
))]
async fn place(
    State(orders): State<OrderService>,
    caller: Caller,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
) -> ApiResult<(StatusCode, Json<OrderView>)> {
    Ok((StatusCode::CREATED, Json(orders.place(caller.username(), key).await?)))
}

/// A page of the caller's orders, newest first (`crate::paging`).
#[utoipa::path(get, path = "/api/orders", tag = "order", security(("bearer" = [])), params(PageQuery), responses(
    (status = 200, description = "The orders, newest first; `Link: <…>; rel=\"next\"` when older ones follow.", body = Vec<OrderView>,
        headers(("Link" = String, description = "The next page, when there is one."))),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 503, response = Unavailable),
))]
async fn list(
    State(orders): State<OrderService>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let (page, limit) = query.page()?;
    Ok(paging::answer("/api/orders", limit, orders.list(caller.username(), page).await?, |o| o.id))
}

/// One of the caller's orders.
#[utoipa::path(get, path = "/api/orders/{id}", tag = "order", security(("bearer" = [])), params(("id" = i64, Path, description = "The order's id.")), responses(
    (status = 200, description = "The order.", body = OrderView),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 404, response = NotFound), (status = 503, response = Unavailable),
))]
async fn show(
    State(orders): State<OrderService>,
    caller: Caller,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders.get(caller.username(), id).await?))
}

/// The order's audit trail: each step of its checkout with its time, from the rows of every
/// service (the owner, or an ADMIN).
#[utoipa::path(get, path = "/api/orders/{id}/history", tag = "order", security(("bearer" = [])), params(("id" = i64, Path, description = "The order's id.")), responses(
    (status = 200, description = "The steps, oldest first.", body = OrderHistory),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 404, response = NotFound), (status = 503, response = Unavailable),
))]
async fn history(
    State(orders): State<OrderService>,
    caller: Caller,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<Json<OrderHistory>> {
    let admin = caller.require(&[Role::Admin]).is_ok();
    Ok(Json(orders.history(caller.username(), admin, id).await?))
}

/// Moves a paid order on (ADMIN).
#[utoipa::path(put, path = "/api/orders/{id}/status", tag = "order", security(("bearer" = [])), params(("id" = i64, Path, description = "The order's id.")), request_body = StatusRequest,
    responses(
    (status = 200, description = "The order as it is now.", body = OrderView),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 404, response = NotFound),
    (status = 409, response = Conflict), (status = 413, response = PayloadTooLarge),
    (status = 415, response = UnsupportedMediaType), (status = 503, response = Unavailable),
))]
async fn set_status(
    State(orders): State<OrderService>,
    _caller: Authorized<AdminOnly>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiJson(req): ApiJson<StatusRequest>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders.set_status(id, &req.status).await?))
}
