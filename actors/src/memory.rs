//! In-memory implementations of the storage and payment ports: for hosts that want no database,
//! for the example, the tests and the benchmarks.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use chrono::Utc;

use uuid::Uuid;

use crate::model::{Cart, NewOrder, Order, OrderEvent, PaymentReceipt, PaymentStatus};
use crate::ports::{CartStore, ChargeRequest, GatewayError, OrderStore, PaymentGateway, StoreError};

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("in-memory store poisoned by a panic".into())
}

#[derive(Default)]
pub struct MemoryCartStore {
    carts: Mutex<HashMap<String, Cart>>,
    applied: Mutex<HashSet<(String, i64)>>,
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
            if !applied.insert((cart.username.clone(), order_id)) {
                return Err(StoreError::Conflict(format!("order {order_id} already applied")));
            }
        }
        let mut next = cart.clone();
        next.version += 1;
        let version = next.version;
        carts.insert(cart.username.clone(), next);
        Ok(version)
    }

    async fn checkout_applied(&self, username: &str, order_id: i64) -> Result<bool, StoreError> {
        Ok(self.applied.lock().map_err(poisoned)?.contains(&(username.to_owned(), order_id)))
    }
}

#[derive(Default)]
pub struct MemoryOrderStore {
    orders: Mutex<HashMap<i64, Order>>,
    /// The outbox: events in the order they were written, and whether each has been relayed.
    outbox: Mutex<Vec<(OrderEvent, bool)>>,
    next_id: AtomicI64,
}

#[async_trait]
impl OrderStore for MemoryOrderStore {
    async fn create(&self, new: NewOrder) -> Result<Order, StoreError> {
        let mut orders = self.orders.lock().map_err(poisoned)?;
        if let Some(key) = &new.idempotency_key
            && orders.values().any(|o| o.username == new.username && o.idempotency_key.as_ref() == Some(key))
        {
            return Err(StoreError::Duplicate(format!("idempotency key {key}")));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let checkout_id = new.checkout_id;
        let order = Order::created(id, new, Utc::now());
        orders.insert(id, order.clone());
        self.outbox.lock().map_err(poisoned)?.push((OrderEvent::created(&order, checkout_id), false));
        Ok(order)
    }

    async fn load(&self, id: i64) -> Result<Option<Order>, StoreError> {
        Ok(self.orders.lock().map_err(poisoned)?.get(&id).cloned())
    }

    async fn find_by_idempotency_key(&self, username: &str, key: &str) -> Result<Option<Order>, StoreError> {
        let orders = self.orders.lock().map_err(poisoned)?;
        Ok(orders
            .values()
            .find(|o| o.username == username && o.idempotency_key.as_deref() == Some(key))
            .cloned())
    }

    async fn update(&self, order: &Order, event: Option<&OrderEvent>) -> Result<i64, StoreError> {
        let mut orders = self.orders.lock().map_err(poisoned)?;
        let stored = orders
            .get_mut(&order.id)
            .ok_or_else(|| StoreError::Conflict(format!("order {} is gone", order.id)))?;
        if stored.version != order.version {
            return Err(StoreError::Conflict(format!("order {} is at version {}", order.id, stored.version)));
        }
        *stored = order.clone();
        stored.version += 1;
        if let Some(event) = event {
            self.outbox.lock().map_err(poisoned)?.push((event.clone(), false));
        }
        Ok(stored.version)
    }

    async fn list_for_user(&self, username: &str) -> Result<Vec<Order>, StoreError> {
        let orders = self.orders.lock().map_err(poisoned)?;
        let mut mine: Vec<Order> = orders.values().filter(|o| o.username == username).cloned().collect();
        mine.sort_by_key(|o| std::cmp::Reverse(o.id));
        Ok(mine)
    }

    async fn unsent_events(&self, limit: usize) -> Result<Vec<OrderEvent>, StoreError> {
        let outbox = self.outbox.lock().map_err(poisoned)?;
        Ok(outbox.iter().filter(|(_, sent)| !sent).take(limit).map(|(e, _)| e.clone()).collect())
    }

    async fn mark_sent(&self, event_ids: &[Uuid]) -> Result<(), StoreError> {
        let mut outbox = self.outbox.lock().map_err(poisoned)?;
        for (event, sent) in outbox.iter_mut() {
            if event_ids.contains(&event.event_id) {
                *sent = true;
            }
        }
        Ok(())
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
}
