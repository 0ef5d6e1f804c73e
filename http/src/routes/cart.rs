use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use shop_services::auth::{JwtKeys, Role};
use shop_services::cart::{CartService, CartView};
use uuid::Uuid;

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::lease::{self, LeaseBody};

#[derive(Clone, FromRef)]
pub struct CartState {
    pub carts: CartService,
    pub keys: JwtKeys,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddRequest {
    product_id: i64,
    quantity: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuantityRequest {
    quantity: i64,
}

pub fn router(state: CartState) -> Router {
    let routes = Router::new()
        .route("/api/cart", get(show).delete(clear))
        .route("/api/cart/add", post(add))
        .route("/api/cart/items/{product_id}", put(set_quantity))
        .route("/api/cart/items/{product_id}", delete(remove))
        // The Order service's side door (SERVICE tokens only): hand a cart to a checkout, give it back.
        .route(lease::BEGIN_ROUTE, post(begin_checkout))
        .route(lease::RELEASE_ROUTE, delete(release_checkout));
    super::finish("cart", routes, state)
}

async fn show(State(carts): State<CartService>, caller: Caller) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.get(caller.username()).await?))
}

async fn add(
    State(carts): State<CartService>,
    caller: Caller,
    ApiJson(req): ApiJson<AddRequest>,
) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.add(caller.username(), req.product_id, req.quantity).await?))
}

async fn set_quantity(
    State(carts): State<CartService>,
    caller: Caller,
    ApiPath(product_id): ApiPath<i64>,
    ApiJson(req): ApiJson<QuantityRequest>,
) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.set_quantity(caller.username(), product_id, req.quantity).await?))
}

async fn remove(
    State(carts): State<CartService>,
    caller: Caller,
    ApiPath(product_id): ApiPath<i64>,
) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.remove(caller.username(), product_id).await?))
}

async fn clear(State(carts): State<CartService>, caller: Caller) -> ApiResult<StatusCode> {
    carts.clear(caller.username()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn begin_checkout(
    State(carts): State<CartService>,
    caller: Caller,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<LeaseBody>> {
    caller.require(&[Role::Service])?;
    Ok(Json(carts.begin_checkout(&username).await?.into()))
}

async fn release_checkout(
    State(carts): State<CartService>,
    caller: Caller,
    ApiPath((username, checkout_id)): ApiPath<(String, Uuid)>,
) -> ApiResult<StatusCode> {
    caller.require(&[Role::Service])?;
    carts.release_checkout(&username, checkout_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
