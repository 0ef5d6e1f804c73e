use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use shop_services::auth::{JwtKeys, Role};
use shop_services::order::{OrderService, OrderView};

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Caller, IdempotencyKeyHeader};

#[derive(Clone, FromRef)]
pub struct OrderState {
    pub orders: OrderService,
    pub keys: JwtKeys,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    status: String,
}

pub fn router(state: OrderState) -> Router {
    let routes = Router::new()
        .route("/api/orders", get(list).post(place))
        .route("/api/orders/{id}", get(show))
        .route("/api/orders/{id}/status", put(set_status));
    super::finish("order", routes, state)
}

async fn place(
    State(orders): State<OrderService>,
    caller: Caller,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
) -> ApiResult<(StatusCode, Json<OrderView>)> {
    Ok((StatusCode::CREATED, Json(orders.place(caller.username(), key).await?)))
}

async fn list(State(orders): State<OrderService>, caller: Caller) -> ApiResult<Json<Vec<OrderView>>> {
    Ok(Json(orders.list(caller.username()).await?))
}

async fn show(
    State(orders): State<OrderService>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(orders.get(caller.username(), id).await?))
}

async fn set_status(
    State(orders): State<OrderService>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<StatusRequest>,
) -> ApiResult<Json<OrderView>> {
    caller.require(&[Role::Admin])?;
    Ok(Json(orders.set_status(id, &req.status).await?))
}
