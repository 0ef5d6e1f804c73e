use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::Deserialize;
use shop_services::auth::{JwtKeys, Role};
use shop_services::product::{Product, ProductInput, ProductService};

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Caller};
use crate::stock;

#[derive(Clone, FromRef)]
pub struct ProductState {
    pub products: ProductService,
    pub keys: JwtKeys,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProductRequest {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// A JSON number or a string; exact either way.
    price: Decimal,
    stock: i64,
}

impl From<ProductRequest> for ProductInput {
    fn from(r: ProductRequest) -> Self {
        ProductInput { name: r.name, description: r.description, price: r.price, stock: r.stock }
    }
}

pub fn router(state: ProductState) -> Router {
    let routes = Router::new()
        .route("/api/products", get(list).post(create))
        .route("/api/products/{id}", get(show).put(update).delete(remove))
        .route(stock::RESERVATION_ROUTE, put(stock::reserve).delete(stock::release))
        .route(stock::COMMIT_ROUTE, post(stock::commit));
    super::finish("product", routes, state)
}

async fn list(State(products): State<ProductService>) -> ApiResult<Json<Vec<Product>>> {
    Ok(Json(products.list().await?))
}

async fn show(State(products): State<ProductService>, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Product>> {
    Ok(Json(products.get(id).await?))
}

async fn create(
    State(products): State<ProductService>,
    caller: Caller,
    ApiJson(req): ApiJson<ProductRequest>,
) -> ApiResult<(StatusCode, Json<Product>)> {
    caller.require(&[Role::Admin])?;
    Ok((StatusCode::CREATED, Json(products.create(req.into()).await?)))
}

async fn update(
    State(products): State<ProductService>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ProductRequest>,
) -> ApiResult<Json<Product>> {
    caller.require(&[Role::Admin])?;
    Ok(Json(products.update(id, req.into()).await?))
}

async fn remove(
    State(products): State<ProductService>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    caller.require(&[Role::Admin])?;
    products.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
