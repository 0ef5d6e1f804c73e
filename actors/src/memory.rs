//! In-memory implementations of the storage and payment ports: for hosts that want no database,
//! for the example, the tests and the benchmarks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use uuid::Uuid;

use crate::model::{
    Cart, LineQuantity, NewOrder, Order, OrderEvent, OrderStatus, PaymentReceipt, PaymentStatus,
};
use crate::ports::{
    CartStore, ChargeRequest, GatewayError, OrderStore, Page, PaymentGateway, Shortage, StockError,
    StockPort, StoreError, VoidRequest,
};

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("in-memory store poisoned by a panic".into())
}

#[derive(Default)]
pub struct MemoryCartStore {
    carts: Mutex<HashMap<String, Cart>>,
    /// Orders whose checkout has been taken out of each user's cart.
    applied: Mutex<HashMap<String, HashMap<i64, DateTime<Utc>>>>,
}

#[async_trait]
impl CartStore for MemoryCartStore {
    async fn load(&self, username: &str) -> Result<Cart, StoreError> {
        let carts = self.carts.lock().map_err(poisoned)?;
        Ok(carts.get(username).cloned().unwrap_or_else(|| Cart::empty(username)))
    }

    async fn save(&self, cart: &Cart, applied_order: Option<i64>) -> Result<i64, StoreError> {
        let mut carts = self.carts.lock().map_err(poisoned)?;
        let stored = carts.get(&cart.username).map_or(0, |c| c.version);
        if stored != cart.version {
            return Err(StoreError::Conflict(format!("cart {} is at version {stored}", cart.username)));
        }
        if let Some(order_id) = applied_order {
            let mut applied = self.applied.lock().map_err(poisoned)?;
            if applied.entry(cart.username.clone()).or_default().insert(order_id, Utc::now()).is_some() {
                return Err(StoreError::Conflict(format!("order {order_id} already applied")));
            }
        }
        let mut next = cart.clone();
        next.version += 1;
        let version = next.version;
        carts.insert(cart.username.clone(), next);
        Ok(version)
    }

    async fn checkout_applied(
        &self,
        username: &str,
        order_id: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.applied.lock().map_err(poisoned)?.get(username).and_then(|a| a.get(&order_id).copied()))
    }
}

/// Orders, their indexes and the outbox, behind one lock so that an order and its event are
/// written together.
#[derive(Default)]
struct OrderTables {
    orders: HashMap<i64, Order>,
    by_user: HashMap<String, Vec<i64>>,
    by_idempotency_key: HashMap<(String, String), i64>,
    /// Unsent events, oldest first. Sent events are dropped: nothing reads them again.
    outbox: VecDeque<OrderEvent>,
    next_id: i64,
    /// When each order last changed, and who holds its recovery lease until when.
    changed_at: HashMap<i64, DateTime<Utc>>,
    recovery: HashMap<i64, (Uuid, DateTime<Utc>)>,
    relay: Option<(Uuid, DateTime<Utc>)>,
}

#[derive(Default)]
pub struct MemoryOrderStore {
    tables: Mutex<OrderTables>,
}

impl MemoryOrderStore {
    fn tables(&self) -> Result<std::sync::MutexGuard<'_, OrderTables>, StoreError> {
        self.tables.lock().map_err(poisoned)
    }
}

#[async_trait]
impl OrderStore for MemoryOrderStore {
    async fn create(&self, new: NewOrder) -> Result<Order, StoreError> {
        let mut t = self.tables()?;
        let key = new.idempotency_key.clone().map(|k| (new.username.clone(), k));
        if let Some(key) = &key
            && t.by_idempotency_key.contains_key(key)
        {
            return Err(StoreError::Duplicate(format!("idempotency key {}", key.1)));
        }
        t.next_id += 1;
        let id = t.next_id;
        let (checkout_id, traceparent) = (new.checkout_id, new.traceparent.clone());
        let order = Order::created(id, new, Utc::now());
        if let Some(key) = key {
            t.by_idempotency_key.insert(key, id);
        }
        t.by_user.entry(order.username.clone()).or_default().push(id);
        t.changed_at.insert(id, Utc::now());
        t.outbox.push_back(OrderEvent::created(&order, checkout_id).in_trace(traceparent));
        t.orders.insert(id, order.clone());
        Ok(order)
    }

    async fn load(&self, id: i64) -> Result<Option<Order>, StoreError> {
        Ok(self.tables()?.orders.get(&id).cloned())
    }

    async fn find_by_idempotency_key(&self, username: &str, key: &str) -> Result<Option<Order>, StoreError> {
        let t = self.tables()?;
        let id = t.by_idempotency_key.get(&(username.to_owned(), key.to_owned()));
        Ok(id.and_then(|id| t.orders.get(id)).cloned())
    }

    async fn update(&self, order: &Order, event: Option<&OrderEvent>) -> Result<i64, StoreError> {
        let mut t = self.tables()?;
        let stored = t
            .orders
            .get_mut(&order.id)
            .ok_or_else(|| StoreError::Conflict(format!("order {} is gone", order.id)))?;
        if stored.version != order.version {
            return Err(StoreError::Conflict(format!("order {} is at version {}", order.id, stored.version)));
        }
        *stored = order.clone();
        stored.version += 1;
        let version = stored.version;
        t.changed_at.insert(order.id, Utc::now());
        if let Some(event) = event {
            t.outbox.push_back(event.clone());
        }
        Ok(version)
    }

    async fn list_for_user(&self, username: &str, page: Page) -> Result<Vec<Order>, StoreError> {
        let t = self.tables()?;
        let ids = t.by_user.get(username).map_or(&[][..], Vec::as_slice);
        // Ids are handed out in increasing order, so the newest is last.
        Ok(ids
            .iter()
            .rev()
            .filter(|id| page.admits(**id, true))
            .take(page.limit as usize)
            .filter_map(|id| t.orders.get(id))
            .cloned()
            .collect())
    }

    async fn unsent_events(&self, limit: usize) -> Result<Vec<OrderEvent>, StoreError> {
        Ok(self.tables()?.outbox.iter().take(limit).cloned().collect())
    }

    async fn mark_sent(&self, event_ids: &[Uuid]) -> Result<(), StoreError> {
        let sent: HashSet<&Uuid> = event_ids.iter().collect();
        self.tables()?.outbox.retain(|e| !sent.contains(&e.event_id));
        Ok(())
    }

    async fn unfinished(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Order>, StoreError> {
        let t = self.tables()?;
        let mut found: Vec<&Order> = t
            .orders
            .values()
            .filter(|o| o.status == OrderStatus::Pending || o.unsettled)
            .filter(|o| t.changed_at.get(&o.id).is_some_and(|at| *at < before))
            .collect();
        found.sort_by_key(|o| o.id);
        Ok(found.into_iter().take(limit).cloned().collect())
    }

    async fn claim_recovery(
        &self,
        order_id: i64,
        owner: Uuid,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut t = self.tables()?;
        let now = Utc::now();
        match t.recovery.get(&order_id) {
            Some((holder, expires)) if *holder != owner && *expires > now => Ok(false),
            _ => {
                t.recovery.insert(order_id, (owner, until));
                Ok(true)
            }
        }
    }

    async fn claim_relay(&self, owner: Uuid, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut t = self.tables()?;
        match t.relay {
            Some((holder, expires)) if holder != owner && expires > Utc::now() => Ok(false),
            _ => {
                t.relay = Some((owner, until));
                Ok(true)
            }
        }
    }
}

/// A payment service with no latency that records one payment per order and declines every
/// `decline_every`-th order id (0: declines none).
pub struct MemoryPayments {
    decline_every: i64,
    payments: Mutex<HashMap<i64, PaymentReceipt>>,
}

impl MemoryPayments {
    pub fn new(decline_every: i64) -> Self {
        Self { decline_every, payments: Mutex::new(HashMap::new()) }
    }

    pub fn count(&self) -> usize {
        self.payments.lock().map(|p| p.len()).unwrap_or(0)
    }
}

#[async_trait]
impl PaymentGateway for MemoryPayments {
    async fn charge(&self, request: ChargeRequest) -> Result<PaymentReceipt, GatewayError> {
        let mut payments = self.payments.lock().map_err(|_| GatewayError::Unavailable("poisoned".into()))?;
        let next_id = i64::try_from(payments.len()).unwrap_or(i64::MAX) + 1;
        let declined = self.decline_every > 0 && request.order_id % self.decline_every == 0;
        let receipt = payments.entry(request.order_id).or_insert_with(|| PaymentReceipt {
            payment_id: next_id,
            status: if declined { PaymentStatus::Failed } else { PaymentStatus::Success },
            transaction_id: (!declined).then(|| format!("TXN_MEM{:06}", request.order_id)),
            failure_reason: declined.then(|| "Card declined".to_owned()),
        });
        Ok(receipt.clone())
    }

    async fn void(&self, request: VoidRequest) -> Result<PaymentReceipt, GatewayError> {
        let mut payments = self.payments.lock().map_err(|_| GatewayError::Unavailable("poisoned".into()))?;
        let next_id = i64::try_from(payments.len()).unwrap_or(i64::MAX) + 1;
        let receipt = payments.entry(request.order_id).or_insert_with(|| PaymentReceipt {
            payment_id: next_id,
            status: PaymentStatus::Failed,
            transaction_id: None,
            failure_reason: Some(request.reason.clone()),
        });
        match receipt.status {
            PaymentStatus::Success => receipt.status = PaymentStatus::Refunded,
            PaymentStatus::Pending => {
                receipt.status = PaymentStatus::Failed;
                receipt.failure_reason = Some(request.reason);
            }
            PaymentStatus::Failed | PaymentStatus::Refunded => {}
        }
        Ok(receipt.clone())
    }

    async fn find(&self, order_id: i64) -> Result<Option<PaymentReceipt>, GatewayError> {
        let payments = self.payments.lock().map_err(|_| GatewayError::Unavailable("poisoned".into()))?;
        Ok(payments.get(&order_id).cloned())
    }
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Reserved,
    Committed,
    Released,
}

#[derive(Default)]
struct StockTables {
    /// Units that can still be bought, per product; a product not listed has no limit.
    available: HashMap<i64, u32>,
    reservations: HashMap<Uuid, (Vec<LineQuantity>, Held)>,
}

/// Stock in memory: unlimited for products never given a stock, exact for the others.
#[derive(Default)]
pub struct MemoryStock {
    tables: Mutex<StockTables>,
}

impl MemoryStock {
    /// Stock with no limits (the benchmarks: stock is not what they measure).
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Sets the units of `product_id` that can be bought.
    pub fn set(&self, product_id: i64, units: u32) {
        if let Ok(mut t) = self.tables.lock() {
            t.available.insert(product_id, units);
        }
    }

    /// Units of `product_id` that can still be bought (`None`: no limit).
    pub fn available(&self, product_id: i64) -> Option<u32> {
        self.tables.lock().ok().and_then(|t| t.available.get(&product_id).copied())
    }

    fn tables(&self) -> Result<std::sync::MutexGuard<'_, StockTables>, StockError> {
        self.tables.lock().map_err(|_| StockError::Unavailable("in-memory stock poisoned by a panic".into()))
    }
}

#[async_trait]
impl StockPort for MemoryStock {
    async fn reserve(&self, checkout_id: Uuid, lines: &[LineQuantity]) -> Result<(), StockError> {
        let mut t = self.tables()?;
        if t.reservations.get(&checkout_id).is_some_and(|(_, held)| *held != Held::Released) {
            return Ok(());
        }
        for line in lines {
            if let Some(&available) = t.available.get(&line.product_id)
                && available < line.quantity
            {
                return Err(StockError::Insufficient(Shortage {
                    product_id: line.product_id,
                    product_name: format!("product {}", line.product_id),
                    requested: line.quantity,
                    available,
                }));
            }
        }
        for line in lines {
            if let Some(available) = t.available.get_mut(&line.product_id) {
                *available -= line.quantity;
            }
        }
        t.reservations.insert(checkout_id, (lines.to_vec(), Held::Reserved));
        Ok(())
    }

    async fn commit(&self, checkout_id: Uuid) -> Result<(), StockError> {
        if let Some((_, held)) = self.tables()?.reservations.get_mut(&checkout_id)
            && *held == Held::Reserved
        {
            *held = Held::Committed;
        }
        Ok(())
    }

    async fn release(&self, checkout_id: Uuid) -> Result<(), StockError> {
        let mut t = self.tables()?;
        let StockTables { available, reservations } = &mut *t;
        if let Some((lines, held)) = reservations.get_mut(&checkout_id)
            && *held == Held::Reserved
        {
            *held = Held::Released;
            for line in lines.iter() {
                if let Some(units) = available.get_mut(&line.product_id) {
                    *units += line.quantity;
                }
            }
        }
        Ok(())
    }
}
