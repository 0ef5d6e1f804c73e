use axum::extract::{FromRef, State};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::Deserialize;
use shop_services::ServiceError;
use shop_services::auth::JwtKeys;
use shop_services::payment::{Payment, PaymentService};

use crate::error::ApiResult;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::{ApiJson, ApiPath, Authorized, Id, ServiceOnly};
use crate::openapi::{self, *};

#[derive(Clone, FromRef)]
pub struct PaymentState {
    pub payments: PaymentService,
    pub keys: JwtKeys,
}

/// The seed sends a numeric user id; this system keys users by name. Both are accepted.
#[derive(Deserialize)]
#[serde(untagged)]
enum UserId {
    Number(#[serde(deserialize_with = "shop_actors::model::whole::i64")] i64),
    Text(String),
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProcessRequest {
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "shop_actors::model::whole::i64")]
    order_id: i64,
    #[schema(schema_with = user_id_schema)]
    user_id: UserId,
    #[schema(value_type = f64, exclusive_minimum = 0, maximum = 99999999.99, multiple_of = 0.01)]
    amount: Decimal,
}

/// A number, or 1 to 100 characters not all spaces.
fn user_id_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new().schema_type(Type::Integer).format(Some(
                utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64),
            )),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(100))
                .pattern(Some(r"[^\s]")),
        )
        .build()
        .into()
}

/// The payment side of a cancelled order, closed (service credentials only).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VoidBody {
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "shop_actors::model::whole::i64")]
    order_id: i64,
    user_id: String,
    #[schema(value_type = f64, exclusive_minimum = 0, maximum = 99999999.99, multiple_of = 0.01)]
    amount: Decimal,
    #[schema(min_length = 1, max_length = 255, pattern = r"[^\s]")]
    reason: String,
}

pub(crate) fn router(state: PaymentState, ops: crate::ops::Ops) -> Router {
    let routes = OpenApiRouter::with_openapi(openapi::base("payment", "Payments through the mock gateway."))
        .routes(routes!(process))
        .routes(routes!(void))
        .routes(routes!(by_order))
        .routes(routes!(crate::history::payment_steps));
    super::finish("payment", routes, state, ops)
}

/// Charges an order through the gateway (SERVICE only: the Order service); one payment per order.
#[utoipa::path(post, path = "/api/payments/process", tag = "payment", security(("bearer" = [])), request_body = ProcessRequest,
    responses(
    (status = 200, description = "The payment: SUCCESS with its transaction id, or FAILED with the reason.", body = Payment),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 409, response = Conflict),
    (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
    (status = 503, response = Unavailable),
))]
async fn process(
    State(payments): State<PaymentService>,
    _caller: Authorized<ServiceOnly>,
    ApiJson(req): ApiJson<ProcessRequest>,
) -> ApiResult<Json<Payment>> {
    let user_id = match req.user_id {
        UserId::Number(n) => n.to_string(),
        UserId::Text(s) => s,
    };
    Ok(Json(payments.process(req.order_id, &user_id, req.amount).await?))
}

/// Where the Order service closes the payment side of a cancelled order.
pub(crate) const VOID_ROUTE: &str = "/internal/payments/void";

/// Closes the payment side of a cancelled order (SERVICE): a pending payment fails, a charge is refunded.
#[utoipa::path(post, path = VOID_ROUTE, tag = "internal", security(("bearer" = [])), request_body = VoidBody, responses(
    (status = 200, description = "The payment as it is now.", body = Payment),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 409, response = Conflict),
    (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
    (status = 503, response = Unavailable),
))]
async fn void(
    State(payments): State<PaymentService>,
    _caller: Authorized<ServiceOnly>,
    ApiJson(req): ApiJson<VoidBody>,
) -> ApiResult<Json<Payment>> {
    Ok(Json(payments.void(req.order_id, &req.user_id, req.amount, &req.reason).await?))
}

/// The payment of an order (SERVICE only; people see it in the order's history).
#[utoipa::path(get, path = "/api/payments/order/{order_id}", tag = "payment", security(("bearer" = [])),
    params(("order_id" = i64, Path, description = "The order's id.")), responses(
    (status = 200, description = "The payment.", body = Payment),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 403, response = Forbidden), (status = 404, response = NotFound),
    (status = 503, response = Unavailable),
))]
async fn by_order(
    State(payments): State<PaymentService>,
    _caller: Authorized<ServiceOnly>,
    ApiPath(Id(order_id)): ApiPath<Id>,
) -> ApiResult<Json<Payment>> {
    let payment = payments.find_by_order(order_id).await?;
    Ok(Json(payment.ok_or_else(|| ServiceError::NotFound(format!("no payment for order {order_id}")))?))
}
