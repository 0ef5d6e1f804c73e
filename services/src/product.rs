//! Product: the catalog and its stock. Anyone reads it; only ADMIN writes it; checkouts reserve
//! stock through it ([`StockPort`]).
//!
//! `stock` is what can still be bought. A checkout's reservation takes its units out of it at
//! once (all lines or none); committing sells them, releasing puts them back, and a reservation
//! nobody commits or releases is put back once its TTL has passed ([`ProductService::sweep`]).
//! Every unit is accounted for: units stocked by admins = stock + reserved + sold.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shop_actors::model::{LineQuantity, OrderEvent, OrderEventType, ProductSnapshot};
use shop_actors::ports::{BusError, EventHandler, Page, Shortage, StockError, StockPort};
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};
use crate::history::{HistorySource, HistoryStep, OrderRef, ReservationLine, reservation_steps};
use crate::money::positive_amount;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub price: Decimal,
    pub stock: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    pub fn snapshot(&self) -> ProductSnapshot {
        ProductSnapshot { id: self.id, name: self.name.clone(), price: self.price }
    }
}

/// A product as a client writes it (create, or full replacement).
#[derive(Debug, Clone)]
pub struct ProductInput {
    pub name: String,
    pub description: Option<String>,
    pub price: Decimal,
    pub stock: i64,
}

/// Largest stock one product may hold.
pub const MAX_STOCK: i64 = 1_000_000;

impl ProductInput {
    fn validated(mut self) -> ServiceResult<Self> {
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() || self.name.chars().count() > 255 {
            return Err(ServiceError::Invalid("name must be 1 to 255 characters".into()));
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > 2000) {
            return Err(ServiceError::Invalid("description must be at most 2000 characters".into()));
        }
        self.price = positive_amount("price", self.price)?;
        if !(0..=MAX_STOCK).contains(&self.stock) {
            return Err(ServiceError::Invalid(format!("stock must be between 0 and {MAX_STOCK}")));
        }
        Ok(self)
    }
}

/// The catalog the embedded system starts with when it has none.
pub fn seed_catalog() -> Vec<ProductInput> {
    let p = |name: &str, description: &str, cents: i64, stock: i64| ProductInput {
        name: name.into(),
        description: Some(description.into()),
        price: Decimal::new(cents, 2),
        stock,
    };
    vec![
        p("Laptop", "15-inch laptop, 16 GB RAM, 512 GB SSD", 99999, 50),
        p("Mouse", "Wireless optical mouse", 2999, 100),
        p("Keyboard", "Mechanical keyboard", 7999, 75),
        p("Monitor", "27-inch 4K monitor", 34999, 30),
        p("Headphones", "Noise-cancelling headphones", 14999, 60),
    ]
}

/// Where the catalog lives (the product database).
#[async_trait]
pub trait ProductStore: Send + Sync + 'static {
    /// A page of the catalog in id order.
    async fn list(&self, page: Page) -> ServiceResult<Vec<Product>>;
    async fn get(&self, id: i64) -> ServiceResult<Option<Product>>;
    async fn create(&self, product: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Product>;
    async fn update(
        &self,
        id: i64,
        product: &ProductInput,
        now: DateTime<Utc>,
    ) -> ServiceResult<Option<Product>>;
    async fn delete(&self, id: i64) -> ServiceResult<bool>;
    /// Inserts `products` if the catalog is empty, in one transaction; returns how many.
    async fn seed_if_empty(&self, products: &[ProductInput], now: DateTime<Utc>) -> ServiceResult<usize>;
    /// Ids of products whose stock is below zero (there must be none).
    async fn negative_stock(&self) -> ServiceResult<Vec<i64>>;
    /// Takes every line out of the stock for `checkout_id`, all or nothing (see [`StockPort`]).
    /// Asking again for a checkout that holds a reservation changes nothing.
    async fn reserve(
        &self,
        checkout_id: Uuid,
        lines: &[LineQuantity],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ServiceResult<Result<(), Refusal>>;
    /// RESERVED lines become COMMITTED (sold). Lines the TTL had already released are taken again
    /// if the stock still has them; `Err(shortage)` if it does not (the order is oversold).
    async fn commit_reservation(
        &self,
        checkout_id: Uuid,
        now: DateTime<Utc>,
    ) -> ServiceResult<Result<(), Shortage>>;
    /// RESERVED lines become RELEASED, their units back in stock; answers how many lines.
    async fn release_reservation(&self, checkout_id: Uuid, now: DateTime<Utc>) -> ServiceResult<usize>;
    /// Checkouts with a RESERVED line that expired before `now`, at most `limit`.
    async fn expired_reservations(&self, now: DateTime<Utc>, limit: usize) -> ServiceResult<Vec<Uuid>>;
    /// Per product, where its units are (the audit's stock conservation).
    async fn stock_ledger(&self) -> ServiceResult<Vec<StockLedger>>;
    /// Per checkout and status, its reservation (the audit).
    async fn reservations(&self) -> ServiceResult<Vec<ReservationSummary>>;
    /// The lines of one checkout's reservation (an order's history).
    async fn reservation_lines(&self, checkout_id: Uuid) -> ServiceResult<Vec<ReservationLine>>;
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Insufficient(Shortage),
    UnknownProduct(i64),
}

/// Where one product's units are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLedger {
    pub product_id: i64,
    /// Every unit admins have put on sale.
    pub units_stocked: i64,
    /// On hand: can still be bought.
    pub stock: i64,
    pub reserved: i64,
    pub sold: i64,
}

/// One checkout's lines in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationSummary {
    pub checkout_id: Uuid,
    pub status: String,
    pub lines: i64,
    /// The earliest expiry of these lines.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct StockConfig {
    /// A reservation nobody commits or releases is released after this long.
    pub reservation_ttl: Duration,
    /// How often expired reservations are looked for.
    pub sweep_interval: Duration,
}

impl Default for StockConfig {
    fn default() -> Self {
        Self { reservation_ttl: Duration::from_secs(15 * 60), sweep_interval: Duration::from_secs(30) }
    }
}

/// Lines merged by product (a product twice in one request counts once, with both quantities),
/// in product order, so that concurrent reservations lock rows in one order.
pub(crate) fn merged(lines: &[LineQuantity]) -> Vec<LineQuantity> {
    let mut merged: Vec<LineQuantity> = Vec::with_capacity(lines.len());
    let mut sorted = lines.to_vec();
    sorted.sort_by_key(|l| l.product_id);
    for line in sorted {
        match merged.last_mut() {
            Some(last) if last.product_id == line.product_id => {
                last.quantity = last.quantity.saturating_add(line.quantity)
            }
            _ => merged.push(line),
        }
    }
    merged
}

#[derive(Clone)]
pub struct ProductService {
    store: Arc<dyn ProductStore>,
    config: StockConfig,
}

fn not_found(id: i64) -> ServiceError {
    ServiceError::NotFound(format!("product {id} not found"))
}

impl ProductService {
    pub fn new(store: Arc<dyn ProductStore>, config: StockConfig) -> Self {
        Self { store, config }
    }

    pub fn stock_config(&self) -> &StockConfig {
        &self.config
    }

    /// Reserves a checkout's lines (see [`StockPort::reserve`]).
    pub async fn reserve(
        &self,
        checkout_id: Uuid,
        lines: &[LineQuantity],
    ) -> ServiceResult<Result<(), Refusal>> {
        if lines.is_empty() {
            return Err(ServiceError::Invalid("a reservation needs at least one line".into()));
        }
        if let Some(bad) =
            lines.iter().find(|l| l.quantity == 0 || l.quantity > shop_actors::model::MAX_LINE_QUANTITY)
        {
            return Err(ServiceError::Invalid(format!(
                "quantity of product {} must be between 1 and {}",
                bad.product_id,
                shop_actors::model::MAX_LINE_QUANTITY
            )));
        }
        let now = crate::time::now();
        let ttl = chrono::Duration::from_std(self.config.reservation_ttl).unwrap_or(chrono::Duration::MAX);
        self.store.reserve(checkout_id, &merged(lines), now + ttl, now).await
    }

    pub async fn commit(&self, checkout_id: Uuid) -> ServiceResult<Result<(), Shortage>> {
        self.store.commit_reservation(checkout_id, crate::time::now()).await
    }

    pub async fn release(&self, checkout_id: Uuid) -> ServiceResult<usize> {
        self.store.release_reservation(checkout_id, crate::time::now()).await
    }

    /// Releases every reservation whose TTL has passed; answers how many checkouts.
    pub async fn sweep(&self) -> ServiceResult<usize> {
        let mut released = 0;
        loop {
            let expired = self.store.expired_reservations(crate::time::now(), 100).await?;
            let full = expired.len() >= 100;
            for checkout_id in expired {
                if self.release(checkout_id).await? > 0 {
                    tracing::info!(%checkout_id, "expired stock reservation released");
                    released += 1;
                }
            }
            if !full {
                return Ok(released);
            }
        }
    }

    /// Sweeps on a timer (`StockConfig::sweep_interval`) for as long as the task runs.
    pub async fn sweep_forever(self) {
        loop {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "stock reservation sweep failed; the next one retries");
            }
            tokio::time::sleep(self.config.sweep_interval).await;
        }
    }

    /// A page of the catalog in id order.
    pub async fn list(&self, page: Page) -> ServiceResult<Vec<Product>> {
        self.store.list(page).await
    }

    pub async fn get(&self, id: i64) -> ServiceResult<Product> {
        self.store.get(id).await?.ok_or_else(|| not_found(id))
    }

    pub async fn create(&self, input: ProductInput) -> ServiceResult<Product> {
        self.store.create(&input.validated()?, crate::time::now()).await
    }

    pub async fn update(&self, id: i64, input: ProductInput) -> ServiceResult<Product> {
        self.store.update(id, &input.validated()?, crate::time::now()).await?.ok_or_else(|| not_found(id))
    }

    pub async fn delete(&self, id: i64) -> ServiceResult<()> {
        if self.store.delete(id).await? { Ok(()) } else { Err(not_found(id)) }
    }

    /// Fills an empty catalog with [`seed_catalog`]; a catalog with any product is left alone.
    pub async fn seed_if_empty(&self) -> ServiceResult<usize> {
        self.store.seed_if_empty(&seed_catalog(), crate::time::now()).await
    }
}

/// In embedded mode the saga reserves stock through the Product service directly.
#[async_trait]
impl StockPort for ProductService {
    async fn reserve(&self, checkout_id: Uuid, lines: &[LineQuantity]) -> Result<(), StockError> {
        match ProductService::reserve(self, checkout_id, lines).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Refusal::Insufficient(shortage))) => Err(StockError::Insufficient(shortage)),
            Ok(Err(Refusal::UnknownProduct(id))) => Err(StockError::UnknownProduct(id)),
            Err(e) => Err(StockError::Unavailable(e.to_string())),
        }
    }

    async fn commit(&self, checkout_id: Uuid) -> Result<(), StockError> {
        match ProductService::commit(self, checkout_id).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(shortage)) => Err(StockError::Insufficient(shortage)),
            Err(e) => Err(StockError::Unavailable(e.to_string())),
        }
    }

    async fn release(&self, checkout_id: Uuid) -> Result<(), StockError> {
        ProductService::release(self, checkout_id)
            .await
            .map(|_| ())
            .map_err(|e| StockError::Unavailable(e.to_string()))
    }
}

/// In distributed mode the Product service ends a checkout's reservation when it sees the
/// outcome on `ORDER_EVENTS` (the saga runs with `stock_follows_events`): `ORDER_COMPLETED`
/// commits it, `ORDER_CANCELLED` releases it. Both are idempotent, so a redelivered event changes
/// nothing; a store error is the bus's to retry.
#[async_trait]
impl EventHandler for ProductService {
    async fn handle(&self, event: &OrderEvent) -> Result<(), BusError> {
        let Some(checkout_id) = event.checkout_id else { return Ok(()) };
        match event.event_type {
            OrderEventType::OrderCompleted => match self.commit(checkout_id).await {
                Ok(Ok(())) => Ok(()),
                // Units the TTL gave back before the order was paid, and bought since: a paid
                // order short of stock, for an operator (redelivery would not change it).
                Ok(Err(shortage)) => {
                    tracing::error!(order_id = event.order_id, %checkout_id, ?shortage, "paid order's stock could not be taken again");
                    Ok(())
                }
                Err(e) => Err(BusError(e.to_string())),
            },
            OrderEventType::OrderCancelled => {
                self.release(checkout_id).await.map(|_| ()).map_err(|e| BusError(e.to_string()))
            }
            OrderEventType::OrderCreated => Ok(()),
        }
    }
}

/// The stock steps of an order: its checkout's reservation.
#[async_trait]
impl HistorySource for ProductService {
    fn name(&self) -> &'static str {
        "product"
    }

    async fn steps(&self, order: &OrderRef) -> ServiceResult<Vec<HistoryStep>> {
        match order.checkout_id {
            Some(checkout_id) => Ok(reservation_steps(&self.store.reservation_lines(checkout_id).await?)),
            None => Ok(Vec::new()),
        }
    }
}
