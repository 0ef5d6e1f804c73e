//! The ports through which the core reaches the outside world. A host implements these with its
//! own storage, payment service and event transport; [`crate::memory`] and
//! [`crate::bus::InProcessBus`] are the in-memory implementations.

use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use crate::model::{Cart, CartItem, LineQuantity, NewOrder, Order, OrderEvent, PaymentReceipt};

/// A storage failure, as the core needs to tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The write was based on a version that is no longer the stored one (another writer got
    /// there first). The caller reloads and decides again.
    #[error("stale write: {0}")]
    Conflict(String),
    /// A unique key already holds a row (an idempotency key used twice, say).
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// The backend failed; the text is for logs, not for clients.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// One page of a list in a stable order: at most `limit` entries that come after the entry
/// whose id is `after` (none: from the start). Ids are the cursor: pages stay stable while rows
/// are added, and each is one index range scan, however far into the list it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: Option<i64>,
    pub limit: u32,
}

impl Page {
    /// The first `limit` entries.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// Whether the entry with id `id` comes after the cursor in a list ordered by `newest_first`
    /// or oldest first (in-memory stores filter with it).
    pub fn admits(&self, id: i64, newest_first: bool) -> bool {
        match self.after {
            None => true,
            Some(after) if newest_first => id < after,
            Some(after) => id > after,
        }
    }
}

/// Where carts live. One cart per username; a missing cart loads as empty with version 0.
#[async_trait]
pub trait CartStore: Send + Sync + 'static {
    async fn load(&self, username: &str) -> Result<Cart, StoreError>;
    /// Stores `cart` if the stored version is still `cart.version`, returning the new version;
    /// otherwise [`StoreError::Conflict`]. With `applied_order`, also records in the same write that
    /// this order's checkout has been taken out of the cart.
    async fn save(&self, cart: &Cart, applied_order: Option<i64>) -> Result<i64, StoreError>;
    /// Like [`CartStore::save`] when no line but those of `products` (changed, added or gone)
    /// differs from what is stored: a store may write just the cart row and those lines.
    /// `cart.version` is at least 1.
    async fn save_lines(
        &self,
        cart: &Cart,
        products: &[i64],
        applied_order: Option<i64>,
    ) -> Result<i64, StoreError> {
        let _ = products;
        self.save(cart, applied_order).await
    }
    /// Like [`CartStore::save`] when only the checkout hold changed (the items did not): a
    /// store may write just the cart row. `cart.version` is at least 1.
    async fn save_hold(&self, cart: &Cart) -> Result<i64, StoreError> {
        self.save(cart, None).await
    }
    /// When this order's checkout was taken out of the user's cart, if it has been.
    async fn checkout_applied(
        &self,
        username: &str,
        order_id: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// Where orders live, with their outbox: every order event is written in the same transaction as
/// the change it announces, and relayed to the event bus afterwards (by the outbox relay, [`crate::Outbox`]).
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Stores a new PENDING order and its `ORDER_CREATED` event (see [`OrderEvent::created`]);
    /// [`StoreError::Duplicate`] if its idempotency key is taken.
    async fn create(&self, order: NewOrder) -> Result<Order, StoreError>;
    async fn load(&self, id: i64) -> Result<Option<Order>, StoreError>;
    async fn find_by_idempotency_key(&self, username: &str, key: &str) -> Result<Option<Order>, StoreError>;
    /// Stores status, payment id and failure reason if the stored version is still
    /// `order.version`, returning the new version; otherwise [`StoreError::Conflict`]. With an
    /// event, the event is put in the outbox in the same transaction.
    async fn update(&self, order: &Order, event: Option<&OrderEvent>) -> Result<i64, StoreError>;
    /// A page of the user's orders, newest first: those older than `page.after` (an order id),
    /// at most `page.limit` of them.
    async fn list_for_user(&self, username: &str, page: Page) -> Result<Vec<Order>, StoreError>;
    /// Outbox events not yet relayed, oldest first.
    async fn unsent_events(&self, limit: usize) -> Result<Vec<OrderEvent>, StoreError>;
    /// Marks relayed events as sent.
    async fn mark_sent(&self, event_ids: &[Uuid]) -> Result<(), StoreError>;
    /// Checkouts that have not reached their end, last changed before `before`: orders still
    /// PENDING, and ones whose steps after the outcome are still open (`Order::unsettled`).
    /// Oldest first.
    async fn unfinished(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Order>, StoreError>;
    /// Takes (or renews) the recovery lease of one order for `owner` until `until`; `false` if
    /// another owner holds an unexpired lease. The lease is not part of the order's version.
    async fn claim_recovery(
        &self,
        order_id: i64,
        owner: Uuid,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Takes (or renews) the outbox relay's lease for `owner` until `until`: while it holds, no
    /// other relay publishes from this outbox. `false` if another owner holds it.
    async fn claim_relay(&self, owner: Uuid, until: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// A charge the saga asks for. Asking twice for one order must never charge twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub order_id: i64,
    pub username: String,
    pub amount: Decimal,
}

/// The payment side of an order that ended (or is ending) CANCELLED, to be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoidRequest {
    pub order_id: i64,
    pub username: String,
    pub amount: Decimal,
    /// Why the order was cancelled: the failure reason of a record that never charged, the
    /// refund reason of one that did.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The payment service could not be asked or did not answer; whether it charged is unknown,
    /// which is why charges are idempotent per order and may be asked again.
    #[error("payment service unavailable: {0}")]
    Unavailable(String),
}

/// The Order → Payment boundary: in embedded mode the payment service itself, in distributed mode
/// an HTTP client. A declined payment is an `Ok` receipt with status FAILED, not an error.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    async fn charge(&self, request: ChargeRequest) -> Result<PaymentReceipt, GatewayError>;
    /// Closes the payment side of a cancelled order, idempotently: no record or a PENDING one
    /// becomes FAILED with the reason; a SUCCESS is refunded (REFUNDED); FAILED and REFUNDED stay.
    async fn void(&self, request: VoidRequest) -> Result<PaymentReceipt, GatewayError>;
    /// The order's payment as recorded, if any.
    async fn find(&self, order_id: i64) -> Result<Option<PaymentReceipt>, GatewayError>;
}

/// A line the stock cannot cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub product_id: i64,
    pub product_name: String,
    pub requested: u32,
    /// Units that can still be bought.
    pub available: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    #[error("only {} of {:?} (product {}) can still be bought; {} asked", .0.available, .0.product_name, .0.product_id, .0.requested)]
    Insufficient(Shortage),
    /// A product in the cart no longer exists.
    #[error("product {0} no longer exists")]
    UnknownProduct(i64),
    #[error("product service unavailable: {0}")]
    Unavailable(String),
}

/// The Order → Product boundary for stock: in embedded mode the product service itself, in
/// distributed mode an HTTP client. Every call is idempotent per checkout.
#[async_trait]
pub trait StockPort: Send + Sync + 'static {
    /// Takes every line out of the stock that can be bought, all or nothing, held for the
    /// checkout until committed, released or expired. Asking again for a checkout that holds a
    /// reservation changes nothing.
    async fn reserve(&self, checkout_id: Uuid, lines: &[LineQuantity]) -> Result<(), StockError>;
    /// The units are sold (the order is PAID).
    async fn commit(&self, checkout_id: Uuid) -> Result<(), StockError>;
    /// The units go back on sale (the order is CANCELLED, or was never made).
    async fn release(&self, checkout_id: Uuid) -> Result<(), StockError>;
}

/// A cart handed to a checkout. While the lease is held no other checkout of the cart starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutLease {
    pub checkout_id: Uuid,
    pub items: Vec<CartItem>,
}

/// A checkout whose order is PAID, handed to the user's next lease: while the cart is still held
/// by it (its `ORDER_COMPLETED` has not reached the cart yet), the Cart side takes its items out
/// there and then, as the event would, and records the order as applied, so that the event,
/// when it comes, changes nothing. The hold is what proves it has not been applied: a cart held
/// by anything else ignores it. Its JSON is what the Order service sends the Cart service.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompletedCheckout {
    #[serde(deserialize_with = "crate::model::whole::i64")]
    pub order_id: i64,
    pub checkout_id: Uuid,
    pub items: Vec<LineQuantity>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartPortError {
    #[error("the cart is empty")]
    Empty,
    #[error("a checkout of this cart is already in progress")]
    CheckoutInProgress,
    #[error("cart service unavailable: {0}")]
    Unavailable(String),
}

/// The Order → Cart boundary: in embedded mode the cart registry, in distributed mode an HTTP
/// client of the Cart service.
#[async_trait]
pub trait CartPort: Send + Sync + 'static {
    /// Holds the cart for a new checkout. With `completed`, the user's last checkout (PAID) is
    /// first taken out of a cart it still holds (see [`CompletedCheckout`]).
    async fn begin_checkout(
        &self,
        username: &str,
        completed: Option<CompletedCheckout>,
    ) -> Result<CheckoutLease, CartPortError>;
    /// Gives the cart back untouched after a failed checkout, so that the user can retry.
    async fn release_checkout(&self, username: &str, checkout_id: Uuid) -> Result<(), CartPortError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event bus: {0}")]
pub struct BusError(pub String);

/// Where order events go: the in-process bus in embedded mode, Kafka in distributed mode.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    async fn publish(&self, event: OrderEvent) -> Result<(), BusError>;
}

/// Something that reacts to order events (the Cart service clearing carts, a test recording them).
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, event: &OrderEvent) -> Result<(), BusError>;
}

#[async_trait]
impl<T: EventBus + ?Sized> EventBus for Arc<T> {
    async fn publish(&self, event: OrderEvent) -> Result<(), BusError> {
        (**self).publish(event).await
    }
}
