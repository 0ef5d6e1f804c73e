//! The entities the actors own, and the events they publish. Plain data: no I/O here.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Largest quantity one cart line may hold. Anything above is a client error, not a big order.
pub const MAX_LINE_QUANTITY: u32 = 1_000;

/// The largest amount of money the system holds anywhere: what a `DECIMAL(10,2)` column
/// (`products.price`, `orders.total_amount`, `payments.amount`) can store, 99 999 999.99. A cart
/// whose total would pass it is refused, since no order or payment could record it.
pub fn max_amount() -> Decimal {
    Decimal::new(9_999_999_999, 2)
}

/// What the cart needs to know about a product at the moment it is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSnapshot {
    pub id: i64,
    pub name: String,
    pub price: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartItem {
    pub product_id: i64,
    pub product_name: String,
    pub price: Decimal,
    pub quantity: u32,
    /// When the line was first put in the cart (the seed's `cart_items.added_at`); adding more of
    /// the product later keeps it.
    pub added_at: DateTime<Utc>,
}

impl CartItem {
    pub fn subtotal(&self) -> Decimal {
        self.price * Decimal::from(self.quantity)
    }

    /// The subtotal, or `None` where it would pass what a `Decimal` holds.
    pub fn checked_subtotal(&self) -> Option<Decimal> {
        self.price.checked_mul(Decimal::from(self.quantity))
    }
}

/// A checkout holding a cart: while it holds (until `expires_at`), no other checkout starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutHold {
    pub id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// A user's cart. `version` counts the writes stored so far (0: never stored); stores use it to
/// refuse a write based on stale state. The checkout hold is stored with the cart, so that the
/// version fence also keeps two processes from handing one cart to two checkouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    pub username: String,
    pub items: Vec<CartItem>,
    pub checkout: Option<CheckoutHold>,
    pub version: i64,
}

impl Cart {
    pub fn empty(username: impl Into<String>) -> Self {
        Self { username: username.into(), items: Vec::new(), checkout: None, version: 0 }
    }

    /// The checkout holding the cart now, if any (an expired hold holds nothing).
    pub fn active_checkout(&self, now: DateTime<Utc>) -> Option<CheckoutHold> {
        self.checkout.filter(|h| h.expires_at > now)
    }

    /// The sum of the subtotals. A cart the Cart service accepted never passes [`max_amount`];
    /// [`Cart::checked_total`] is for a cart that is still being judged.
    pub fn total(&self) -> Decimal {
        self.items.iter().map(CartItem::subtotal).sum()
    }

    /// The total, or `None` where it would pass what a `Decimal` holds.
    pub fn checked_total(&self) -> Option<Decimal> {
        self.items.iter().try_fold(Decimal::ZERO, |sum, i| sum.checked_add(i.checked_subtotal()?))
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Removes what a completed checkout bought. Items added after the checkout (a new product,
    /// or more of one already bought) stay.
    pub fn subtract(&mut self, bought: &[LineQuantity]) {
        for line in bought {
            if let Some(pos) = self.items.iter().position(|i| i.product_id == line.product_id) {
                let item = &mut self.items[pos];
                if item.quantity <= line.quantity {
                    self.items.remove(pos);
                } else {
                    item.quantity -= line.quantity;
                }
            }
        }
    }
}

/// A product id and a quantity: what an order event says was bought.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineQuantity {
    #[serde(deserialize_with = "whole::i64")]
    pub product_id: i64,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    #[serde(deserialize_with = "whole::u32")]
    pub quantity: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Paid,
    Cancelled,
    Shipped,
    Delivered,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Cancelled,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
        }
    }

    /// The transitions an order may take: the saga moves PENDING to PAID or CANCELLED; fulfilment
    /// moves PAID to SHIPPED to DELIVERED. Nothing else, and nothing backwards.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Paid) | (Pending, Cancelled) | (Paid, Shipped) | (Shipped, Delivered)
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub product_id: i64,
    pub product_name: String,
    pub price: Decimal,
    pub quantity: u32,
}

impl From<&CartItem> for OrderItem {
    fn from(i: &CartItem) -> Self {
        Self {
            product_id: i.product_id,
            product_name: i.product_name.clone(),
            price: i.price,
            quantity: i.quantity,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    pub username: String,
    pub items: Vec<OrderItem>,
    pub total_amount: Decimal,
    pub status: OrderStatus,
    /// The gateway's transaction id (`TXN_…`) of the payment that paid the order (the seed's
    /// "Transaction ID from Payment Service"); `None` until it is PAID.
    pub payment_id: Option<String>,
    pub failure_reason: Option<String>,
    pub idempotency_key: Option<String>,
    /// The cart checkout the order comes from: it keys the order's stock reservation, and
    /// recovery names it to the cart and the stock when it finishes a stuck checkout.
    pub checkout_id: Option<Uuid>,
    /// The order has its outcome, but a step after it could not be done yet (closing the payment
    /// of a cancelled order while Payment was unreachable, committing or releasing its stock):
    /// recovery redoes those steps (each is idempotent), then clears this.
    pub unsettled: bool,
    pub created_at: DateTime<Utc>,
    /// Stored writes so far; a store refuses an update whose version is not the stored one.
    pub version: i64,
}

impl Order {
    /// The order a store has just created from `new` under `id`: PENDING, version 1.
    pub fn created(id: i64, new: NewOrder, created_at: DateTime<Utc>) -> Self {
        Self {
            id,
            username: new.username,
            items: new.items,
            total_amount: new.total_amount,
            status: OrderStatus::Pending,
            payment_id: None,
            failure_reason: None,
            idempotency_key: new.idempotency_key,
            checkout_id: new.checkout_id,
            unsettled: false,
            created_at,
            version: 1,
        }
    }

    pub fn lines(&self) -> Vec<LineQuantity> {
        self.items.iter().map(|i| LineQuantity { product_id: i.product_id, quantity: i.quantity }).collect()
    }
}

/// An order about to be stored: the store gives it an id, status PENDING and version 1.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub username: String,
    pub items: Vec<OrderItem>,
    pub total_amount: Decimal,
    pub idempotency_key: Option<String>,
    /// The cart checkout the order comes from (carried by its events).
    pub checkout_id: Option<Uuid>,
    /// The trace of the checkout that makes it (a `traceparent`), carried by its
    /// `ORDER_CREATED` event.
    pub traceparent: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Recorded before the gateway is asked (the seed's "Save payment record (status=PENDING)").
    Pending,
    Success,
    Failed,
    /// Charged, then given back because the order ended CANCELLED.
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 4] =
        [PaymentStatus::Pending, PaymentStatus::Success, PaymentStatus::Failed, PaymentStatus::Refunded];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "PENDING",
            PaymentStatus::Success => "SUCCESS",
            PaymentStatus::Failed => "FAILED",
            PaymentStatus::Refunded => "REFUNDED",
        }
    }

    /// Whether the payment has reached its end: the gateway has answered (and, if charged for a
    /// cancelled order, the charge has been given back).
    pub fn is_final(self) -> bool {
        !matches!(self, PaymentStatus::Pending)
    }
}

impl FromStr for PaymentStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// What the payment service recorded for one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReceipt {
    pub payment_id: i64,
    pub status: PaymentStatus,
    pub transaction_id: Option<String>,
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderEventType {
    OrderCreated,
    OrderCompleted,
    OrderCancelled,
}

impl OrderEventType {
    /// As the event's JSON names it.
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderEventType::OrderCreated => "ORDER_CREATED",
            OrderEventType::OrderCompleted => "ORDER_COMPLETED",
            OrderEventType::OrderCancelled => "ORDER_CANCELLED",
        }
    }
}

/// The value of a record on `ORDER_EVENTS` (and legacy `ORDER_CREATED`), keyed by username.
/// `eventType`, `username`, `orderId` and `reason` are the seed's fields; the rest are additions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    pub event_type: OrderEventType,
    pub username: String,
    pub order_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// What the order bought, so that the cart removes exactly that and nothing added later.
    #[serde(default)]
    pub items: Vec<LineQuantity>,
    /// The cart checkout this order came from; the cart releases its checkout lease on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_id: Option<Uuid>,
    /// The trace the event belongs to (a W3C `traceparent`), when the change it announces was
    /// made in one. Not part of the event's JSON: the outbox keeps it in a column of its own and
    /// the Kafka bridge sends it as the record's `traceparent` header.
    #[serde(skip)]
    pub traceparent: Option<String>,
}

impl OrderEvent {
    pub fn new(event_type: OrderEventType, order: &Order, checkout_id: Option<Uuid>) -> Self {
        Self {
            reason: match event_type {
                OrderEventType::OrderCancelled => order.failure_reason.clone(),
                _ => None,
            },
            event_type,
            username: order.username.clone(),
            order_id: order.id,
            event_id: Uuid::new_v4(),
            occurred_at: Utc::now(),
            items: order.lines(),
            checkout_id,
            traceparent: None,
        }
    }

    /// The `ORDER_CREATED` event a store writes with a new order (in the trace of its
    /// [`NewOrder::traceparent`], through [`OrderEvent::in_trace`]).
    pub fn created(order: &Order, checkout_id: Option<Uuid>) -> Self {
        Self::new(OrderEventType::OrderCreated, order, checkout_id)
    }

    /// The same event, as part of the trace `traceparent`.
    pub fn in_trace(self, traceparent: Option<String>) -> Self {
        Self { traceparent, ..self }
    }

    /// The event announcing that `order` has reached its saga outcome, if it has.
    pub fn outcome(order: &Order, checkout_id: Option<Uuid>) -> Option<Self> {
        match order.status {
            OrderStatus::Paid => Some(Self::new(OrderEventType::OrderCompleted, order, checkout_id)),
            OrderStatus::Cancelled => Some(Self::new(OrderEventType::OrderCancelled, order, checkout_id)),
            _ => None,
        }
    }

    /// The topic the event goes to: `ORDER_CREATED` keeps its legacy topic.
    pub fn topic(&self) -> &'static str {
        match self.event_type {
            OrderEventType::OrderCreated => "ORDER_CREATED",
            _ => "ORDER_EVENTS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: i64, qty: u32) -> CartItem {
        CartItem {
            product_id: id,
            product_name: format!("p{id}"),
            price: Decimal::new(1050, 2),
            quantity: qty,
            added_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn subtract_keeps_what_was_added_after_checkout() {
        let mut cart = Cart {
            username: "u".into(),
            items: vec![item(1, 3), item(2, 1), item(3, 2)],
            checkout: None,
            version: 4,
        };
        cart.subtract(&[
            LineQuantity { product_id: 1, quantity: 2 },
            LineQuantity { product_id: 2, quantity: 1 },
            LineQuantity { product_id: 9, quantity: 1 },
        ]);
        assert_eq!(cart.items, vec![item(1, 1), item(3, 2)]);
        assert_eq!(cart.total(), Decimal::new(3150, 2));
    }

    #[test]
    fn only_forward_transitions_are_allowed() {
        use OrderStatus::*;
        let allowed: Vec<_> = ALL_PAIRS().into_iter().filter(|(a, b)| a.can_become(*b)).collect();
        assert_eq!(
            allowed,
            vec![(Pending, Paid), (Pending, Cancelled), (Paid, Shipped), (Shipped, Delivered)]
        );
    }

    #[allow(non_snake_case)]
    fn ALL_PAIRS() -> Vec<(OrderStatus, OrderStatus)> {
        OrderStatus::ALL.iter().flat_map(|a| OrderStatus::ALL.iter().map(move |b| (*a, *b))).collect()
    }

    #[test]
    fn event_json_has_the_seed_fields() {
        let order = Order {
            id: 124,
            username: "john".into(),
            items: vec![],
            total_amount: Decimal::ZERO,
            status: OrderStatus::Cancelled,
            payment_id: None,
            failure_reason: Some("Insufficient funds".into()),
            idempotency_key: None,
            checkout_id: None,
            unsettled: false,
            created_at: Utc::now(),
            version: 2,
        };
        let v = serde_json::to_value(OrderEvent::new(OrderEventType::OrderCancelled, &order, None))
            .expect("serialises");
        assert_eq!(v["eventType"], "ORDER_CANCELLED");
        assert_eq!(v["username"], "john");
        assert_eq!(v["orderId"].to_string(), "124");
        assert_eq!(v["reason"], "Insufficient funds");
        assert_eq!("PAID".parse::<OrderStatus>(), Ok(OrderStatus::Paid));
        assert!("paid".parse::<OrderStatus>().is_err());
    }
}

/// Whole numbers as JSON Schema counts them: `3` and also `3.0` (an `integer` in an OpenAPI
/// document admits both). Anything with a fraction, or out of range, is refused.
pub mod whole {
    use serde::de::{Deserialize, Deserializer, Error};

    fn number<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        if let Some(i) = n.as_i64() {
            return Ok(i.into());
        }
        if let Some(u) = n.as_u64() {
            return Ok(u.into());
        }
        match n.as_f64() {
            // Beyond 2^53 a float no longer tells whole numbers apart.
            Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => Ok(f as i128),
            _ => Err(D::Error::custom(format!("invalid value: {n}, expected a whole number"))),
        }
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let n = number(d)?;
        i64::try_from(n).map_err(|_| D::Error::custom(format!("{n} is out of range")))
    }

    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let n = number(d)?;
        u32::try_from(n).map_err(|_| D::Error::custom(format!("{n} is out of range for a quantity")))
    }
}

#[cfg(test)]
mod whole_tests {
    #[derive(serde::Deserialize, Debug)]
    struct Line {
        #[serde(deserialize_with = "super::whole::u32")]
        quantity: u32,
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction_and_nothing_else() {
        let read = |json: &str| serde_json::from_str::<Line>(json).map(|l| l.quantity);
        assert_eq!(read(r#"{"quantity": 3}"#).ok(), Some(3));
        assert_eq!(read(r#"{"quantity": 3.0}"#).ok(), Some(3));
        for bad in
            [r#"{"quantity": 3.5}"#, r#"{"quantity": -1}"#, r#"{"quantity": 1e300}"#, r#"{"quantity": "3"}"#]
        {
            assert!(read(bad).is_err(), "{bad} must be refused");
        }
    }
}
