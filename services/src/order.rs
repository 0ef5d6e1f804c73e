//! Order: the order database, and placing orders through the checkout saga.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shop_actors::durations::DurationSnapshot;
use shop_actors::model::{Order, OrderStatus};
use shop_actors::ports::{OrderStore, Page};
use shop_actors::{
    Checkouts, OrderSide, Orders, Outbox, PaymentPool, Recovery, RecoveryStats, RegistryStats, SagaStats,
    Transition,
};

use crate::error::{ServiceError, ServiceResult};
use crate::history::{HistorySource, OrderHistory, OrderRef, OrderRows, in_order};
use crate::money::two_places;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemView {
    pub product_id: i64,
    pub product_name: String,
    pub price: Decimal,
    pub quantity: u32,
}

/// An order as the REST contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: i64,
    pub username: String,
    pub total_amount: Decimal,
    pub status: OrderStatus,
    /// The gateway's transaction id (`TXN_…`) once the order is paid.
    pub payment_id: Option<String>,
    pub failure_reason: Option<String>,
    pub items: Vec<OrderItemView>,
    pub created_at: DateTime<Utc>,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        Self {
            id: o.id,
            username: o.username,
            total_amount: two_places(o.total_amount),
            status: o.status,
            payment_id: o.payment_id,
            failure_reason: o.failure_reason,
            items: o
                .items
                .into_iter()
                .map(|i| OrderItemView {
                    product_id: i.product_id,
                    product_name: i.product_name,
                    price: two_places(i.price),
                    quantity: i.quantity,
                })
                .collect(),
            created_at: o.created_at,
        }
    }
}

/// What the audit needs of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub id: i64,
    pub status: String,
    /// The gateway's transaction id.
    pub payment_id: Option<String>,
    pub total_amount: Decimal,
    pub checkout_id: Option<uuid::Uuid>,
    pub unsettled: bool,
    pub updated_at: DateTime<Utc>,
}

/// The order database: the actor core's [`OrderStore`] plus what the audit reads.
#[async_trait]
pub trait OrderRepo: OrderStore {
    async fn summaries(&self) -> ServiceResult<Vec<OrderSummary>>;
    /// Every outcome event (`ORDER_COMPLETED`, `ORDER_CANCELLED`) in the outbox: its order, and
    /// whether it has been sent.
    async fn outcome_events(&self) -> ServiceResult<Vec<(i64, bool)>>;
    /// What the order database holds of the order's history; `None` if there is no such order.
    async fn history_rows(&self, order_id: i64) -> ServiceResult<Option<OrderRows>>;
    /// Unsent outbox rows, and when the oldest of them was written (`/metrics`).
    async fn outbox_backlog(&self) -> ServiceResult<(u64, Option<DateTime<Utc>>)>;
}

/// The Order service: places orders through the saga and shows each user their own.
#[derive(Clone)]
pub struct OrderService {
    orders: Orders,
    checkouts: Checkouts,
    payments: PaymentPool,
    recovery: Recovery,
    outbox: Outbox,
    /// The order database, for what the actors do not answer (an order's history).
    repo: Arc<dyn OrderRepo>,
    /// The other services holding part of an order's history: Product, Payment, Cart.
    history: Arc<[Arc<dyn HistorySource>]>,
}

/// What `/metrics` shows of the Order side: read from the actor core's own counters.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFigures {
    pub checkouts: SagaStats,
    /// How long checkouts that made an order took.
    pub checkout_durations: DurationSnapshot,
    /// How long events waited in the outbox before the relay published them.
    pub relay_lag: DurationSnapshot,
    pub recovery: RecoveryStats,
    pub actors: RegistryStats,
    /// Charges being made now, and checkouts waiting for a payment worker.
    pub payments_in_flight: usize,
    pub payments_queued: usize,
}

/// A client's `Idempotency-Key`: 1 to 100 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key as the header carried it, or 400.
    pub fn parse(bytes: &[u8]) -> ServiceResult<Self> {
        match std::str::from_utf8(bytes) {
            Ok(key) if (1..=100).contains(&key.len()) && key.chars().all(|c| c.is_ascii_graphic()) => {
                Ok(Self(key.to_owned()))
            }
            _ => {
                Err(ServiceError::Invalid("Idempotency-Key must be 1 to 100 visible ASCII characters".into()))
            }
        }
    }
}

impl OrderService {
    /// The service over the actor core's order side; `repo` is the order database the side
    /// stores to, `history` the services an order's history is also asked of.
    pub fn new(side: &OrderSide, repo: Arc<dyn OrderRepo>, history: Vec<Arc<dyn HistorySource>>) -> Self {
        Self {
            orders: side.orders.clone(),
            checkouts: side.checkouts.clone(),
            payments: side.payments.clone(),
            recovery: side.recovery.clone(),
            outbox: side.outbox.clone(),
            repo,
            history: history.into(),
        }
    }

    pub fn figures(&self) -> OrderFigures {
        let (payments_in_flight, payments_queued) = self.payments.in_use();
        OrderFigures {
            checkouts: self.checkouts.stats(),
            checkout_durations: self.checkouts.durations(),
            relay_lag: self.outbox.relay_lag(),
            recovery: self.recovery.stats(),
            actors: self.orders.stats(),
            payments_in_flight,
            payments_queued,
        }
    }

    /// Events in the outbox not yet sent, and when the oldest of them was written.
    pub async fn outbox_backlog(&self) -> ServiceResult<(u64, Option<DateTime<Utc>>)> {
        self.repo.outbox_backlog().await
    }

    /// Runs the checkout saga for the user's cart. With an idempotency key, the same key returns
    /// the same order and never pays twice.
    pub async fn place(&self, username: &str, key: Option<IdempotencyKey>) -> ServiceResult<OrderView> {
        Ok(self.checkouts.checkout(username, key.map(|k| k.0)).await?.into())
    }

    /// A page of the user's orders, newest first.
    pub async fn list(&self, username: &str, page: Page) -> ServiceResult<Vec<OrderView>> {
        Ok(self.orders.list_for_user(username, page).await?.into_iter().map(OrderView::from).collect())
    }

    /// The order, if it is the user's; another user's order is "not found", not "forbidden",
    /// so that order ids cannot be probed.
    pub async fn get(&self, username: &str, id: i64) -> ServiceResult<OrderView> {
        let order = self.orders.get(id).await?;
        if order.username != username {
            return Err(ServiceError::NotFound(format!("order {id} not found")));
        }
        Ok(order.into())
    }

    /// The order's audit trail, from the rows of every service (see [`crate::history`]): for
    /// its owner, or anyone when `admin`. Another user's order is "not found". A service that
    /// cannot be asked makes the answer 503 naming it: a trail with a gap would mislead.
    pub async fn history(&self, username: &str, admin: bool, id: i64) -> ServiceResult<OrderHistory> {
        let order = self.orders.get(id).await?;
        if order.username != username && !admin {
            return Err(ServiceError::NotFound(format!("order {id} not found")));
        }
        let rows = self
            .repo
            .history_rows(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("order {id} not found")))?;
        let asked =
            OrderRef { order_id: id, username: order.username.clone(), checkout_id: order.checkout_id };
        let answers = futures::future::join_all(self.history.iter().map(|source| async {
            source.steps(&asked).await.map_err(|e| match e {
                ServiceError::Busy(_) | ServiceError::Internal(_) => ServiceError::Busy(format!(
                    "the {} service did not answer for the history: {e}",
                    source.name()
                )),
                e => e,
            })
        }))
        .await;
        let mut steps = rows.steps();
        for answer in answers {
            steps.extend(answer?);
        }
        Ok(OrderHistory { order_id: id, status: order.status, steps: in_order(steps) })
    }

    /// Fulfilment (ADMIN): PAID → SHIPPED → DELIVERED, nothing else.
    pub async fn set_status(&self, id: i64, status: &str) -> ServiceResult<OrderView> {
        let to: OrderStatus = status.parse().map_err(|_| {
            ServiceError::Invalid(format!(
                "status must be one of PENDING, PAID, CANCELLED, SHIPPED, DELIVERED (got {status:?})"
            ))
        })?;
        if !matches!(to, OrderStatus::Shipped | OrderStatus::Delivered) {
            let current = self.orders.get(id).await?;
            return Err(ServiceError::Conflict(format!(
                "order {id} is {} and cannot be set to {to}: only PAID → SHIPPED → DELIVERED",
                current.status
            )));
        }
        Ok(self.orders.transition(id, Transition::to(to)).await?.into())
    }
}
