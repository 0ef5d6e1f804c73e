//! An order's audit trail (the seed's "audit trail for all transactions"): each step of its
//! checkout with its time, read from the rows each service stored of it, never from logs.
//!
//! | step                                   | service | row                                            |
//! |----------------------------------------|---------|------------------------------------------------|
//! | `CREATED`                              | order   | `orders.created_at`                            |
//! | `STOCK_RESERVED`                       | product | `stock_reservations.created_at` (the checkout's) |
//! | `PAYMENT_ASKED`                        | payment | `payments.created_at` (saved PENDING first)    |
//! | `PAYMENT_APPROVED` / `PAYMENT_DECLINED`| payment | `payments.updated_at` with its status          |
//! | `PAID` / `CANCELLED`                   | order   | the outcome event's `order_outbox.created_at` (same transaction) |
//! | `STOCK_COMMITTED` / `STOCK_RELEASED`   | product | `stock_reservations.updated_at`                |
//! | `REFUNDED`                             | payment | `payments.refunded_at`                         |
//! | `EVENT_SENT`                           | order   | `order_outbox.sent_at`, one per event          |
//! | `CART_CLEARED`                         | cart    | `cart_applied_orders.applied_at`               |
//! | `SHIPPED` / `DELIVERED`                | order   | `orders.shipped_at` / `delivered_at`           |
//!
//! The Order service assembles the trail: its own steps, and those each other service answers
//! for the order through a [`HistorySource`] (in process in embedded mode, over HTTP with a
//! SERVICE token in distributed mode).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_actors::model::{OrderEvent, OrderEventType, OrderStatus};
use uuid::Uuid;

use crate::error::ServiceResult;

/// A step of an order's checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Step {
    Created,
    StockReserved,
    PaymentAsked,
    PaymentApproved,
    PaymentDeclined,
    Paid,
    Cancelled,
    StockCommitted,
    StockReleased,
    Refunded,
    EventSent,
    CartCleared,
    Shipped,
    Delivered,
}

/// One step, when it happened, and the service whose row says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryStep {
    pub step: Step,
    pub at: DateTime<Utc>,
    /// `order`, `product`, `payment` or `cart`.
    pub service: String,
    /// What the row adds: the transaction id, the gateway's reason, the event sent, the lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl HistoryStep {
    /// The cart's one step: it gave up the order's items.
    pub fn cart_cleared(at: DateTime<Utc>) -> Self {
        Self::new(Step::CartCleared, at, "cart", None)
    }

    pub fn new(step: Step, at: DateTime<Utc>, service: &str, detail: Option<String>) -> Self {
        Self { step, at, service: service.to_owned(), detail }
    }
}

/// `GET /api/orders/{id}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderHistory {
    pub order_id: i64,
    pub status: OrderStatus,
    /// Oldest first.
    pub steps: Vec<HistoryStep>,
}

/// Which order a service is asked about: what its rows are keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OrderRef {
    pub order_id: i64,
    pub username: String,
    /// The cart checkout the order came from (it keys the stock reservation).
    pub checkout_id: Option<Uuid>,
}

/// A service that holds part of an order's trail.
#[async_trait]
pub trait HistorySource: Send + Sync + 'static {
    /// The service's name in [`HistoryStep::service`].
    fn name(&self) -> &'static str;
    async fn steps(&self, order: &OrderRef) -> ServiceResult<Vec<HistoryStep>>;
}

/// What the order database holds of an order's trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRows {
    pub created_at: DateTime<Utc>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The order's outbox rows, oldest first: the event, when it was written, when it was sent.
    pub events: Vec<(OrderEvent, DateTime<Utc>, Option<DateTime<Utc>>)>,
}

impl OrderRows {
    pub fn steps(self) -> Vec<HistoryStep> {
        let order = |step, at, detail| HistoryStep::new(step, at, "order", detail);
        let mut steps = vec![order(Step::Created, self.created_at, None)];
        for (event, written, sent) in self.events {
            match event.event_type {
                OrderEventType::OrderCompleted => steps.push(order(Step::Paid, written, None)),
                OrderEventType::OrderCancelled => steps.push(order(Step::Cancelled, written, event.reason)),
                OrderEventType::OrderCreated => {}
            }
            if let Some(sent) = sent {
                steps.push(order(Step::EventSent, sent, Some(event.event_type.as_str().to_owned())));
            }
        }
        steps.extend(self.shipped_at.map(|at| order(Step::Shipped, at, None)));
        steps.extend(self.delivered_at.map(|at| order(Step::Delivered, at, None)));
        steps
    }
}

/// A line of a checkout's reservation, as the product database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationLine {
    /// `RESERVED`, `COMMITTED` or `RELEASED`.
    pub status: String,
    pub quantity: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The stock steps of a checkout's reservation: reserved when its first line was, then, for
/// each way its lines ended, when the last of them did.
pub fn reservation_steps(lines: &[ReservationLine]) -> Vec<HistoryStep> {
    let product = |step, at, detail| HistoryStep::new(step, at, "product", detail);
    let units = |lines: &[&ReservationLine]| {
        let n: i64 = lines.iter().map(|l| l.quantity).sum();
        Some(format!("{n} units on {} lines", lines.len()))
    };
    let Some(reserved) = lines.iter().map(|l| l.created_at).min() else { return Vec::new() };
    let mut steps = vec![product(Step::StockReserved, reserved, units(&lines.iter().collect::<Vec<_>>()))];
    for (status, step) in [("COMMITTED", Step::StockCommitted), ("RELEASED", Step::StockReleased)] {
        let ended: Vec<&ReservationLine> = lines.iter().filter(|l| l.status == status).collect();
        if let Some(at) = ended.iter().map(|l| l.updated_at).max() {
            steps.push(product(step, at, units(&ended)));
        }
    }
    steps
}

/// The trail in time order; steps of one instant in the order of the checkout.
pub fn in_order(mut steps: Vec<HistoryStep>) -> Vec<HistoryStep> {
    steps.sort_by_key(|s| (s.at, s.step));
    steps
}
