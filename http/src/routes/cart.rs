use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use serde::Deserialize;
use shop_services::auth::JwtKeys;
use shop_services::cart::{CartService, CartView};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authorized, Caller, Id, ServiceOnly};
use crate::lease::{self, BeginBody, LeaseBody};
use crate::openapi::{self, *};

#[derive(Clone, FromRef)]
pub struct CartState {
    pub carts: CartService,
    pub keys: JwtKeys,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddRequest {
    #[serde(deserialize_with = "shop_actors::model::whole::i64")]
    product_id: i64,
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "shop_actors::model::whole::i64")]
    quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct QuantityRequest {
    /// 0 takes the line out.
    #[schema(minimum = 0, maximum = 1000)]
    #[serde(deserialize_with = "shop_actors::model::whole::i64")]
    quantity: i64,
}

pub(crate) fn router(state: CartState, ops: crate::ops::Ops) -> Router {
    let routes = OpenApiRouter::with_openapi(openapi::base("cart", "Each user's cart."))
        .routes(routes!(show, clear))
        .routes(routes!(add))
        .routes(routes!(set_quantity, remove))
        // The Order service's side door (SERVICE tokens only): hand a cart to a checkout, give it back.
        .routes(routes!(begin_checkout))
        .routes(routes!(release_checkout))
        .routes(routes!(crate::history::cart_steps));
    super::finish("cart", routes, state, ops)
}

/// The caller's cart.
#[utoipa::path(get, path = "/api/cart", tag = "cart", security(("bearer" = [])), responses(
    (status = 200, description = "The cart.", body = CartView),
    (status = 401, response = Unauthorized), (status = 503, response = Unavailable),
))]
async fn show(State(carts): State<CartService>, caller: Caller) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.get(caller.username()).await?))
}

/// Adds a product to the caller's cart (or more of it).
#[utoipa::path(post, path = "/api/cart/add", tag = "cart", security(("bearer" = [])), request_body = AddRequest, responses(
    (status = 200, description = "The cart as it is now.", body = CartView),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 404, response = NotFound), (status = 409, response = Conflict),
    (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
    (status = 503, response = Unavailable),
))]
async fn add(
    State(carts): State<CartService>,
    caller: Caller,
    ApiJson(req): ApiJson<AddRequest>,
) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.add(caller.username(), req.product_id, req.quantity).await?))
}

/// Sets how many of a product the cart holds.
#[utoipa::path(put, path = "/api/cart/items/{product_id}", tag = "cart", security(("bearer" = [])), params(("product_id" = i64, Path, description = "The product's id.")),
    request_body = QuantityRequest, responses(
    (status = 200, description = "The cart as it is now.", body = CartView),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 404, response = NotFound), (status = 409, response = Conflict),
    (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
    (status = 503, response = Unavailable),
))]
async fn set_quantity(
    State(carts): State<CartService>,
    caller: Caller,
    ApiPath(Id(product_id)): ApiPath<Id>,
    ApiJson(req): ApiJson<QuantityRequest>,
) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.set_quantity(caller.username(), product_id, req.quantity).await?))
}

/// Takes a product out of the cart.
#[utoipa::path(delete, path = "/api/cart/items/{product_id}", tag = "cart", security(("bearer" = [])), params(("product_id" = i64, Path, description = "The product's id.")), responses(
    (status = 200, description = "The cart as it is now.", body = CartView),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 404, response = NotFound), (status = 409, response = Conflict),
    (status = 503, response = Unavailable),
))]
async fn remove(
    State(carts): State<CartService>,
    caller: Caller,
    ApiPath(Id(product_id)): ApiPath<Id>,
) -> ApiResult<Json<CartView>> {
    Ok(Json(carts.remove(caller.username(), product_id).await?))
}

/// Empties the cart.
#[utoipa::path(delete, path = "/api/cart", tag = "cart", security(("bearer" = [])), responses(
    (status = 204, description = "Emptied."),
    (status = 401, response = Unauthorized), (status = 409, response = Conflict),
    (status = 503, response = Unavailable),
))]
async fn clear(State(carts): State<CartService>, caller: Caller) -> ApiResult<StatusCode> {
    carts.clear(caller.username()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Hands the user's cart to a checkout (SERVICE). The body may name the user's last checkout,
/// PAID, to take out of a cart it still holds.
#[utoipa::path(post, path = lease::BEGIN_ROUTE, tag = "internal", security(("bearer" = [])),
    params(("username" = String, Path, description = "Whose cart.")), request_body(content = Option<BeginBody>), responses(
    (status = 200, description = "The lease: the checkout's id and the items it holds.", body = LeaseBody),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 409, response = Conflict),
    (status = 503, response = Unavailable),
))]
async fn begin_checkout(
    State(carts): State<CartService>,
    _caller: Authorized<ServiceOnly>,
    ApiPath(username): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<LeaseBody>> {
    let BeginBody { completed } = BeginBody::parse(&body).map_err(ApiError::bad_request)?;
    Ok(Json(carts.begin_checkout(&username, completed).await?.into()))
}

/// Gives a leased cart back (SERVICE).
#[utoipa::path(delete, path = lease::RELEASE_ROUTE, tag = "internal", security(("bearer" = [])), params(
    ("username" = String, Path, description = "Whose cart."),
    ("checkout_id" = Uuid, Path, description = "The checkout that holds it."),
), responses(
    (status = 204, description = "Released."),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 409, response = Conflict),
    (status = 503, response = Unavailable),
))]
async fn release_checkout(
    State(carts): State<CartService>,
    _caller: Authorized<ServiceOnly>,
    ApiPath((username, checkout_id)): ApiPath<(String, Uuid)>,
) -> ApiResult<StatusCode> {
    carts.release_checkout(&username, checkout_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
