//! Cart: the caller's own cart, held by cart actors and stored in the cart database.

use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::Serialize;
use shop_actors::Carts;
use shop_actors::model::{Cart, MAX_LINE_QUANTITY};
use shop_actors::ports::{CartPort, CartStore, CheckoutLease, CompletedCheckout};
use uuid::Uuid;

use crate::error::{ServiceError, ServiceResult};
use crate::history::{HistorySource, HistoryStep, OrderRef};
use crate::money::two_places;
use crate::product::{Product, ProductService};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartItemView {
    pub product_id: i64,
    pub product_name: String,
    pub price: Decimal,
    pub quantity: u32,
    pub subtotal: Decimal,
}

/// A cart as the REST contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartView {
    pub username: String,
    pub items: Vec<CartItemView>,
    pub total_amount: Decimal,
}

impl From<Cart> for CartView {
    fn from(cart: Cart) -> Self {
        Self {
            total_amount: two_places(cart.total()),
            items: cart
                .items
                .iter()
                .map(|i| CartItemView {
                    product_id: i.product_id,
                    product_name: i.product_name.clone(),
                    price: two_places(i.price),
                    quantity: i.quantity,
                    subtotal: two_places(i.subtotal()),
                })
                .collect(),
            username: cart.username,
        }
    }
}

/// Where the Cart service looks products up: the Product service itself in embedded mode, its
/// REST API in distributed mode.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// The product, or `ServiceError::NotFound`.
    async fn product(&self, id: i64) -> ServiceResult<Product>;
}

#[async_trait]
impl Catalog for ProductService {
    async fn product(&self, id: i64) -> ServiceResult<Product> {
        self.get(id).await
    }
}

/// A catalog that keeps each product it looked up for `ttl` and answers from that snapshot
/// meanwhile, so that a cart add needs no call to the Product service while one is at hand
/// (distributed mode). What a snapshot may be behind by is bounded by `ttl`: a price changed
/// within it reaches new cart lines up to `ttl` late (a line keeps the price it was added at in
/// any case), and the add's stock check, which only refuses what plainly cannot be had, may be
/// that stale; the checkout's stock reservation is what takes stock, against the Product
/// database itself. Unknown products are asked about every time.
pub struct CachedCatalog<C> {
    inner: C,
    ttl: std::time::Duration,
    snapshots: std::sync::Mutex<std::collections::HashMap<i64, (std::time::Instant, Product)>>,
}

/// Snapshots kept before the stale ones are swept out.
const CATALOG_SNAPSHOTS: usize = 10_000;

impl<C: Catalog> CachedCatalog<C> {
    pub fn new(inner: C, ttl: std::time::Duration) -> Self {
        Self { inner, ttl, snapshots: Default::default() }
    }

    fn fresh(&self, id: i64) -> Option<Product> {
        let snapshots = self.snapshots.lock().ok()?;
        snapshots.get(&id).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, p)| p.clone())
    }
}

#[async_trait]
impl<C: Catalog> Catalog for CachedCatalog<C> {
    async fn product(&self, id: i64) -> ServiceResult<Product> {
        if let Some(product) = self.fresh(id) {
            return Ok(product);
        }
        let product = self.inner.product(id).await?;
        if let Ok(mut snapshots) = self.snapshots.lock() {
            if snapshots.len() >= CATALOG_SNAPSHOTS {
                snapshots.retain(|_, (at, _)| at.elapsed() < self.ttl);
            }
            if snapshots.len() < CATALOG_SNAPSHOTS {
                snapshots.insert(id, (std::time::Instant::now(), product.clone()));
            }
        }
        Ok(product)
    }
}

/// The Cart service: checks requests against the catalog, then hands them to the cart actors.
#[derive(Clone)]
pub struct CartService {
    carts: Carts,
    catalog: Arc<dyn Catalog>,
    /// The cart database, for what the actors do not answer (an order's history).
    store: Arc<dyn CartStore>,
}

fn quantity(q: i64, allow_zero: bool) -> ServiceResult<u32> {
    let min = if allow_zero { 0 } else { 1 };
    match u32::try_from(q) {
        Ok(v) if v >= min && v <= MAX_LINE_QUANTITY => Ok(v),
        _ => Err(ServiceError::Invalid(format!(
            "quantity must be between {min} and {MAX_LINE_QUANTITY} (got {q})"
        ))),
    }
}

impl CartService {
    pub fn new(carts: Carts, catalog: Arc<dyn Catalog>, store: Arc<dyn CartStore>) -> Self {
        Self { carts, catalog, store }
    }

    /// The cart actors' counters (`/metrics`).
    pub fn actor_stats(&self) -> shop_actors::RegistryStats {
        self.carts.stats()
    }

    /// From an order event's writing to the cart changed by it (`/metrics`).
    pub fn event_latency(&self) -> shop_actors::durations::DurationSnapshot {
        self.carts.event_latency()
    }

    pub async fn get(&self, username: &str) -> ServiceResult<CartView> {
        Ok(self.carts.get(username).await?.into())
    }

    pub async fn add(&self, username: &str, product_id: i64, qty: i64) -> ServiceResult<CartView> {
        let qty = quantity(qty, false)?;
        let product = self.catalog.product(product_id).await?;
        if i64::from(qty) > product.stock {
            return Err(ServiceError::Conflict(format!(
                "only {} of product {product_id} in stock (asked for {qty})",
                product.stock
            )));
        }
        Ok(self.carts.add(username, product.snapshot(), qty).await?.into())
    }

    pub async fn set_quantity(&self, username: &str, product_id: i64, qty: i64) -> ServiceResult<CartView> {
        let qty = quantity(qty, true)?;
        Ok(self.carts.set_quantity(username, product_id, qty).await?.into())
    }

    pub async fn remove(&self, username: &str, product_id: i64) -> ServiceResult<CartView> {
        Ok(self.carts.remove(username, product_id).await?.into())
    }

    pub async fn clear(&self, username: &str) -> ServiceResult<()> {
        self.carts.clear(username).await?;
        Ok(())
    }

    /// Hands the user's cart to a checkout (the Order service's side door): 400 when it is
    /// empty, 409 while another checkout holds it. With `completed`, the user's last PAID
    /// checkout is first taken out of a cart it still holds ([`CompletedCheckout`]).
    pub async fn begin_checkout(
        &self,
        username: &str,
        completed: Option<CompletedCheckout>,
    ) -> ServiceResult<CheckoutLease> {
        Ok(self.carts.begin_checkout(username, completed).await?)
    }

    /// Gives a held cart back untouched after a failed checkout.
    pub async fn release_checkout(&self, username: &str, checkout_id: Uuid) -> ServiceResult<()> {
        Ok(self.carts.release_checkout(username, checkout_id).await?)
    }
}

/// The cart's step of an order: when the cart gave up the order's items.
#[async_trait]
impl HistorySource for CartService {
    fn name(&self) -> &'static str {
        "cart"
    }

    async fn steps(&self, order: &OrderRef) -> ServiceResult<Vec<HistoryStep>> {
        let applied = self.store.checkout_applied(&order.username, order.order_id).await?;
        Ok(applied.map(|at| vec![HistoryStep::cart_cleared(at)]).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A catalog of one product (id 7) that counts the lookups it was asked.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Catalog for Counting {
        async fn product(&self, id: i64) -> ServiceResult<Product> {
            self.0.fetch_add(1, Ordering::Relaxed);
            if id != 7 {
                return Err(ServiceError::NotFound(format!("product {id} not found")));
            }
            let now = crate::time::now();
            Ok(Product {
                id,
                name: "Lamp".into(),
                description: None,
                price: Decimal::new(1999, 2),
                stock: 3,
                created_at: now,
                updated_at: now,
            })
        }
    }

    #[tokio::test]
    async fn a_snapshot_answers_until_it_is_older_than_its_ttl() {
        let cached = CachedCatalog::new(Counting::default(), Duration::from_secs(3600));
        for _ in 0..3 {
            assert_eq!(cached.product(7).await.expect("found").price, Decimal::new(1999, 2));
        }
        assert_eq!(cached.inner.0.load(Ordering::Relaxed), 1, "one lookup, two answers from the snapshot");
        for _ in 0..2 {
            assert!(matches!(cached.product(8).await, Err(ServiceError::NotFound(_))));
        }
        assert_eq!(cached.inner.0.load(Ordering::Relaxed), 3, "an unknown product is asked about every time");

        let short = CachedCatalog::new(Counting::default(), Duration::from_millis(1));
        short.product(7).await.expect("found");
        tokio::time::sleep(Duration::from_millis(5)).await;
        short.product(7).await.expect("found");
        assert_eq!(short.inner.0.load(Ordering::Relaxed), 2, "the stale snapshot was looked up again");
        let none = CachedCatalog::new(Counting::default(), Duration::ZERO);
        none.product(7).await.expect("found");
        none.product(7).await.expect("found");
        assert_eq!(none.inner.0.load(Ordering::Relaxed), 2, "a ttl of 0 keeps nothing");
    }
}
