//! The internal cart-lease API between the Order and the Cart service, written once: its paths,
//! its body, and how a refusal travels (the Cart service answers with a status, the Order
//! service reads the status back into the same [`CartPortError`]).
//!
//! | refusal                       | Cart answers        | Order reads                         |
//! |-------------------------------|---------------------|-------------------------------------|
//! | the cart is empty             | 400 (`Invalid`)     | [`CartPortError::Empty`]            |
//! | another checkout holds it     | 409 (`Conflict`)    | [`CartPortError::CheckoutInProgress`] |
//! | the cart could not be reached | 503 (`Busy`)        | [`CartPortError::Unavailable`]      |
//!
//! The Cart side's half is `From<CartPortError> for ServiceError` (`shop_services::error`) and
//! the one status per `ServiceError` ([`crate::error`]); the Order side's half is [`refusal`].
//! The test below holds the two against each other.

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shop_actors::model::CartItem;
use shop_actors::ports::{CartPortError, CheckoutLease, CompletedCheckout};
use uuid::Uuid;

/// Routes of the Cart service's side door (SERVICE tokens only).
pub(crate) const BEGIN_ROUTE: &str = "/internal/carts/{username}/checkout";
pub(crate) const RELEASE_ROUTE: &str = "/internal/carts/{username}/checkout/{checkout_id}";

pub(crate) fn begin_path(username: &str) -> String {
    format!("/internal/carts/{username}/checkout")
}

pub(crate) fn release_path(username: &str, checkout_id: Uuid) -> String {
    format!("/internal/carts/{username}/checkout/{checkout_id}")
}

/// What the Order service may send when it asks for a cart (an empty body is the same as `{}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BeginBody {
    /// The user's last checkout, PAID, whose `ORDER_COMPLETED` may not have reached the cart
    /// yet: if it still holds the cart, its items are taken out before the new checkout holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<CompletedCheckout>,
}

impl BeginBody {
    /// The body of a begin request: empty is `{}`.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(bytes).map_err(|e| format!("invalid checkout request: {e}"))
    }
}

/// What the Cart service answers when it hands a cart to a checkout.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseBody {
    pub checkout_id: Uuid,
    pub items: Vec<LeasedItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeasedItem {
    pub product_id: i64,
    pub product_name: String,
    pub price: Decimal,
    pub quantity: u32,
    #[serde(default = "chrono::Utc::now")]
    pub added_at: chrono::DateTime<chrono::Utc>,
}

impl From<CheckoutLease> for LeaseBody {
    fn from(l: CheckoutLease) -> Self {
        let items = l
            .items
            .into_iter()
            .map(|i| LeasedItem {
                product_id: i.product_id,
                product_name: i.product_name,
                price: i.price,
                quantity: i.quantity,
                added_at: i.added_at,
            })
            .collect();
        Self { checkout_id: l.checkout_id, items }
    }
}

impl From<LeaseBody> for CheckoutLease {
    fn from(b: LeaseBody) -> Self {
        let items = b
            .items
            .into_iter()
            .map(|i| CartItem {
                product_id: i.product_id,
                product_name: i.product_name,
                price: i.price,
                quantity: i.quantity,
                added_at: i.added_at,
            })
            .collect();
        Self { checkout_id: b.checkout_id, items }
    }
}

/// The refusal behind the Cart service's answer `status` (with `detail`, its text).
pub(crate) fn refusal(status: StatusCode, detail: String) -> CartPortError {
    match status {
        StatusCode::BAD_REQUEST => CartPortError::Empty,
        StatusCode::CONFLICT => CartPortError::CheckoutInProgress,
        _ => CartPortError::Unavailable(format!("answered {status}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use shop_services::ServiceError;

    use super::*;
    use crate::error::ApiError;

    #[test]
    fn a_begin_body_is_empty_or_names_the_checkout_before_and_nothing_else() {
        assert!(BeginBody::parse(b"").expect("empty").completed.is_none());
        assert!(BeginBody::parse(b"{}").expect("{}").completed.is_none());
        let id = Uuid::new_v4();
        let text = format!(
            r#"{{"completed":{{"orderId":7,"checkoutId":"{id}","items":[{{"productId":2,"quantity":3}}]}}}}"#
        );
        let done = BeginBody::parse(text.as_bytes()).expect("parses").completed.expect("completed");
        assert_eq!((done.order_id, done.checkout_id, done.items.len()), (7, id, 1));
        for bad in [&b"{\"other\":1}"[..], b"7", b"{", b"{\"completed\":{\"orderId\":7}}"] {
            assert!(BeginBody::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn every_refusal_the_cart_service_sends_is_read_back_as_itself() {
        for sent in
            [CartPortError::Empty, CartPortError::CheckoutInProgress, CartPortError::Unavailable("x".into())]
        {
            let status = ApiError::from(ServiceError::from(sent.clone())).into_response().status();
            let read = refusal(status, String::new());
            assert_eq!(
                std::mem::discriminant(&read),
                std::mem::discriminant(&sent),
                "{sent:?} sent as {status}"
            );
        }
    }
}
