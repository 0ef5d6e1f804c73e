//! The internal stock API between the Order and the Product service, written once: its paths,
//! its bodies, and how a refusal travels. SERVICE tokens only; every call is idempotent per
//! checkout.
//!
//! | call                                             | answers                                  |
//! |--------------------------------------------------|------------------------------------------|
//! | `PUT /internal/stock/reservations/{checkout}`    | 204 reserved; 409 problem with the shortage (`productId`, `productName`, `requested`, `available`); 404 a product is gone |
//! | `POST /internal/stock/reservations/{checkout}/commit` | 204 sold; 409 with the shortage if the TTL had released it and the stock is gone |
//! | `DELETE /internal/stock/reservations/{checkout}` | 204 released (or nothing held)           |

use axum::extract::State;
use axum::http::StatusCode;
use reqwest::StatusCode as ClientStatus;
use serde::{Deserialize, Serialize};
use shop_actors::model::LineQuantity;
use shop_actors::ports::{Shortage, StockError};
use shop_services::ServiceError;
use shop_services::product::{ProductService, Refusal};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, Authorized, ServiceOnly};
use crate::openapi::*;

pub(crate) const RESERVATION_ROUTE: &str = "/internal/stock/reservations/{checkout_id}";
pub(crate) const COMMIT_ROUTE: &str = "/internal/stock/reservations/{checkout_id}/commit";

pub(crate) fn reservation_path(checkout_id: Uuid) -> String {
    format!("/internal/stock/reservations/{checkout_id}")
}

pub(crate) fn commit_path(checkout_id: Uuid) -> String {
    format!("/internal/stock/reservations/{checkout_id}/commit")
}

/// What the Order service asks to reserve.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveBody {
    #[schema(min_items = 1)]
    pub lines: Vec<LineQuantity>,
}

/// A shortage as the problem's extension members carry it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShortageMembers {
    product_id: i64,
    product_name: String,
    requested: u32,
    available: u32,
}

/// A shortage as a 409 problem; `ApiError` carries it in the extension members.
fn shortage_error(shortage: Shortage) -> ApiError {
    ServiceError::OutOfStock(shortage).into()
}

/// Holds stock for a checkout (SERVICE); idempotent per checkout.
#[utoipa::path(put, path = RESERVATION_ROUTE, tag = "internal", security(("bearer" = [])), params(("checkout_id" = Uuid, Path, description = "The checkout holding the stock.")),
    request_body = ReserveBody, responses(
    (status = 204, description = "Reserved."),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 404, response = NotFound),
    (status = 409, response = Conflict), (status = 413, response = PayloadTooLarge),
    (status = 415, response = UnsupportedMediaType), (status = 503, response = Unavailable),
))]
pub(crate) async fn reserve(
    State(products): State<ProductService>,
    _caller: Authorized<ServiceOnly>,
    ApiPath(checkout_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ReserveBody>,
) -> ApiResult<StatusCode> {
    match products.reserve(checkout_id, &body.lines).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(Refusal::Insufficient(shortage)) => Err(shortage_error(shortage)),
        Err(Refusal::UnknownProduct(id)) => {
            Err(ServiceError::NotFound(format!("product {id} not found")).into())
        }
    }
}

/// Sells what a checkout holds (SERVICE); idempotent.
#[utoipa::path(post, path = COMMIT_ROUTE, tag = "internal", security(("bearer" = [])), params(("checkout_id" = Uuid, Path, description = "The checkout holding the stock.")), responses(
    (status = 204, description = "Sold."),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 409, response = Conflict),
    (status = 503, response = Unavailable),
))]
pub(crate) async fn commit(
    State(products): State<ProductService>,
    _caller: Authorized<ServiceOnly>,
    ApiPath(checkout_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    match products.commit(checkout_id).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(shortage) => Err(shortage_error(shortage)),
    }
}

/// Gives back what a checkout holds (SERVICE); idempotent.
#[utoipa::path(delete, path = RESERVATION_ROUTE, tag = "internal", security(("bearer" = [])), params(("checkout_id" = Uuid, Path, description = "The checkout holding the stock.")),
    responses(
    (status = 204, description = "Released, or nothing was held."),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 503, response = Unavailable),
))]
pub(crate) async fn release(
    State(products): State<ProductService>,
    _caller: Authorized<ServiceOnly>,
    ApiPath(checkout_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    products.release(checkout_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The refusal behind the Product service's answer `status` (with `body`, its problem).
pub(crate) fn refusal(status: ClientStatus, body: &str, lines: &[LineQuantity]) -> StockError {
    match status {
        ClientStatus::CONFLICT => match serde_json::from_str::<ShortageMembers>(body) {
            Ok(m) => StockError::Insufficient(Shortage {
                product_id: m.product_id,
                product_name: m.product_name,
                requested: m.requested,
                available: m.available,
            }),
            Err(e) => StockError::Unavailable(format!("answered 409 without a shortage ({e}): {body}")),
        },
        ClientStatus::NOT_FOUND => {
            let gone = lines.iter().map(|l| l.product_id).find(|id| body.contains(&format!("product {id} ")));
            match gone {
                Some(id) => StockError::UnknownProduct(id),
                None => StockError::Unavailable(format!("answered 404: {body}")),
            }
        }
        _ => StockError::Unavailable(format!("answered {status}: {body}")),
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[tokio::test]
    async fn a_shortage_the_product_service_sends_is_read_back_as_itself() {
        let shortage = Shortage { product_id: 7, product_name: "Mouse".into(), requested: 3, available: 1 };
        let response = shortage_error(shortage.clone()).into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        let read = refusal(status, &String::from_utf8_lossy(&body), &[]);
        assert_eq!(read, StockError::Insufficient(shortage));
        let lines = [LineQuantity { product_id: 12, quantity: 1 }];
        let gone = ApiError::from(ServiceError::NotFound("product 12 not found".into())).into_response();
        let status = gone.status();
        let body = axum::body::to_bytes(gone.into_body(), 1 << 16).await.expect("body");
        assert_eq!(refusal(status, &String::from_utf8_lossy(&body), &lines), StockError::UnknownProduct(12));
    }
}
