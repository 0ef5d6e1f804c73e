use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::Deserialize;
use shop_services::auth::JwtKeys;
use shop_services::product::{Product, ProductInput, ProductService};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{AdminOnly, ApiJson, ApiPath, ApiQuery, Authorized, Id};
use crate::openapi::{self, *};
use crate::paging::{self, PageQuery};
use crate::stock;

#[derive(Clone, FromRef)]
pub struct ProductState {
    pub products: ProductService,
    pub keys: JwtKeys,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProductRequest {
    /// Surrounding spaces are trimmed.
    #[schema(min_length = 1, max_length = 255, pattern = r"[^\s]", example = "Keyboard")]
    name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// A JSON number or a string; exact either way. More than zero, two decimal places at most.
    #[schema(value_type = f64, exclusive_minimum = 0, maximum = 99999999.99, multiple_of = 0.01, example = 49.99)]
    price: Decimal,
    /// Units on hand.
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(deserialize_with = "shop_actors::model::whole::i64")]
    stock: i64,
}

impl From<ProductRequest> for ProductInput {
    fn from(r: ProductRequest) -> Self {
        ProductInput { name: r.name, description: r.description, price: r.price, stock: r.stock }
    }
}

pub(crate) fn router(state: ProductState, ops: crate::ops::Ops) -> Router {
    let routes = OpenApiRouter::with_openapi(openapi::base("product", "The catalog and its stock."))
        .routes(routes!(list, create))
        .routes(routes!(show, update, remove))
        .routes(routes!(stock::reserve, stock::release))
        .routes(routes!(stock::commit))
        .routes(routes!(crate::history::product_steps));
    super::finish("product", routes, state, ops)
}

/// A page of the catalog, in id order (`crate::paging`).
#[utoipa::path(get, path = "/api/products", tag = "product", params(PageQuery), responses(
    (status = 200, description = "The catalog's page; `Link: <…>; rel=\"next\"` when more follow.", body = Vec<Product>,
        headers(("Link" = String, description = "The next page, when there is one."))),
    (status = 400, response = BadRequest), (status = 503, response = Unavailable),
))]
async fn list(
    State(products): State<ProductService>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let (page, limit) = query.page()?;
    Ok(paging::answer("/api/products", limit, products.list(page).await?, |p| p.id))
}

/// One product.
#[utoipa::path(get, path = "/api/products/{id}", tag = "product", params(("id" = i64, Path, description = "The product's id.")), responses(
    (status = 200, description = "The product.", body = Product),
    (status = 400, response = BadRequest), (status = 404, response = NotFound),
    (status = 503, response = Unavailable),
))]
async fn show(
    State(products): State<ProductService>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<Json<Product>> {
    Ok(Json(products.get(id).await?))
}

/// Adds a product (ADMIN).
#[utoipa::path(post, path = "/api/products", tag = "product", security(("bearer" = [])),
    request_body = ProductRequest, responses(
    (status = 201, description = "The new product.", body = Product),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden),
    (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
    (status = 503, response = Unavailable),
))]
async fn create(
    State(products): State<ProductService>,
    _caller: Authorized<AdminOnly>,
    ApiJson(req): ApiJson<ProductRequest>,
) -> ApiResult<(StatusCode, Json<Product>)> {
    Ok((StatusCode::CREATED, Json(products.create(req.into()).await?)))
}

/// Replaces a product (ADMIN).
#[utoipa::path(put, path = "/api/products/{id}", tag = "product", security(("bearer" = [])), params(("id" = i64, Path, description = "The product's id.")),
    request_body = ProductRequest, responses(
    (status = 200, description = "The product as it is now.", body = Product),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 404, response = NotFound),
    (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
    (status = 503, response = Unavailable),
))]
async fn update(
    State(products): State<ProductService>,
    _caller: Authorized<AdminOnly>,
    ApiPath(Id(id)): ApiPath<Id>,
    ApiJson(req): ApiJson<ProductRequest>,
) -> ApiResult<Json<Product>> {
    Ok(Json(products.update(id, req.into()).await?))
}

/// Deletes a product (ADMIN).
#[utoipa::path(delete, path = "/api/products/{id}", tag = "product", security(("bearer" = [])), params(("id" = i64, Path, description = "The product's id.")),
    responses(
    (status = 204, description = "Deleted."),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 404, response = NotFound),
    (status = 409, response = Conflict), (status = 503, response = Unavailable),
))]
async fn remove(
    State(products): State<ProductService>,
    _caller: Authorized<AdminOnly>,
    ApiPath(Id(id)): ApiPath<Id>,
) -> ApiResult<StatusCode> {
    products.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
