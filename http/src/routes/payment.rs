use axum::extract::{FromRef, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::Deserialize;
use shop_services::ServiceError;
use shop_services::auth::{JwtKeys, Role};
use shop_services::payment::{Payment, PaymentService};

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, Caller};

#[derive(Clone, FromRef)]
pub struct PaymentState {
    pub payments: PaymentService,
    pub keys: JwtKeys,
}

/// The seed sends a numeric user id; this system keys users by name. Both are accepted.
#[derive(Deserialize)]
#[serde(untagged)]
enum UserId {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProcessRequest {
    order_id: i64,
    user_id: UserId,
    amount: Decimal,
}

/// Payments are taken by the Order service, never by end users.
const CALLERS: [Role; 2] = [Role::Service, Role::Admin];

/// The payment side of a cancelled order, closed (service credentials only).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VoidBody {
    order_id: i64,
    user_id: String,
    amount: Decimal,
    reason: String,
}

pub fn router(state: PaymentState) -> Router {
    let routes = Router::new()
        .route("/api/payments/process", post(process))
        .route(VOID_ROUTE, post(void))
        .route("/api/payments/order/{order_id}", get(by_order));
    super::finish("payment", routes, state)
}

async fn process(
    State(payments): State<PaymentService>,
    caller: Caller,
    ApiJson(req): ApiJson<ProcessRequest>,
) -> ApiResult<Json<Payment>> {
    caller.require(&CALLERS)?;
    let user_id = match req.user_id {
        UserId::Number(n) => n.to_string(),
        UserId::Text(s) => s,
    };
    Ok(Json(payments.process(req.order_id, &user_id, req.amount).await?))
}

/// Where the Order service closes the payment side of a cancelled order.
pub(crate) const VOID_ROUTE: &str = "/internal/payments/void";

async fn void(
    State(payments): State<PaymentService>,
    caller: Caller,
    ApiJson(req): ApiJson<VoidBody>,
) -> ApiResult<Json<Payment>> {
    caller.require(&[Role::Service])?;
    Ok(Json(payments.void(req.order_id, &req.user_id, req.amount, &req.reason).await?))
}

async fn by_order(
    State(payments): State<PaymentService>,
    caller: Caller,
    ApiPath(order_id): ApiPath<i64>,
) -> ApiResult<Json<Payment>> {
    caller.require(&CALLERS)?;
    let payment = payments.find_by_order(order_id).await?;
    Ok(Json(payment.ok_or_else(|| ServiceError::NotFound(format!("no payment for order {order_id}")))?))
}
