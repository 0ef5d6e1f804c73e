//! The cart actor: one per username, owning that user's cart.
//!
//! Its commands run on the write-through engine ([`crate::entity`]): one at a time, so two adds
//! never read the same old state; the cart is cached after the first load and written through to
//! the [`CartStore`] on every change. This file holds only the cart's decisions ([`decide`]).
//!
//! A checkout holds the cart ([`crate::model::CheckoutHold`], stored with the cart): it stops a
//! second checkout of the same cart while one runs, in this process or another, and lapses after
//! [`CartConfig::lease_ttl`] in case the saga never comes back.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::entity::{self, Decision, WriteThrough};
use crate::model::{
    Cart, CartItem, CheckoutHold, LineQuantity, MAX_LINE_QUANTITY, OrderEvent, OrderEventType,
    ProductSnapshot, max_amount,
};
use crate::ports::{
    BusError, CartPort, CartPortError, CartStore, CheckoutLease, CompletedCheckout, EventHandler, StoreError,
};
use crate::registry::{
    Activation, Entity, Passivate, Registry, RegistryConfig, RegistryError, RegistryStats,
};
use crate::runtime::ActorRuntime;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("product {0} is not in the cart")]
    NotInCart(i64),
    #[error("quantity must be between 1 and {MAX_LINE_QUANTITY} (asked for {0})")]
    QuantityOutOfRange(u64),
    #[error("the cart is empty")]
    Empty,
    /// The change would take the cart's total past [`max_amount`]: no order could hold it.
    #[error("the cart's total would be {0}, more than the largest order ({max})", max = max_amount())]
    TotalTooLarge(Decimal),
    #[error("a checkout of this cart is already in progress")]
    CheckoutInProgress,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

#[derive(Debug, Clone)]
pub struct CartConfig {
    pub registry: RegistryConfig,
    /// How long a checkout may hold the cart before the lease lapses on its own.
    pub lease_ttl: Duration,
}

impl Default for CartConfig {
    fn default() -> Self {
        Self { registry: RegistryConfig::default(), lease_ttl: Duration::from_secs(60) }
    }
}

#[derive(Clone)]
pub struct CartDeps {
    store: Arc<dyn CartStore>,
    lease_ttl: Duration,
}

/// What a cart command can ask for.
#[derive(Debug, Clone)]
pub enum CartCommand {
    Get,
    /// Adds `quantity` of the product (merging with a line already there).
    Add {
        product: ProductSnapshot,
        quantity: u32,
    },
    /// Sets a line's quantity; 0 removes the line.
    SetQuantity {
        product_id: i64,
        quantity: u32,
    },
    Remove {
        product_id: i64,
    },
    Clear,
    /// Hands the cart to a checkout and holds it until released or applied; first takes the
    /// checkout before out of it if it still holds the cart (see [`CompletedCheckout`]).
    BeginCheckout {
        completed: Option<CompletedCheckout>,
    },
    ReleaseCheckout {
        checkout_id: Uuid,
    },
    /// Takes a completed order's items out of the cart, once per order.
    ApplyCheckout {
        order_id: i64,
        items: Vec<LineQuantity>,
        checkout_id: Option<Uuid>,
    },
}

/// The cart after a command, and the checkout id when the command began a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartOutcome {
    pub cart: Cart,
    pub checkout_id: Option<Uuid>,
}

impl Message for CartCommand {
    type Result = Result<CartOutcome, CartError>;
}

pub struct CartActor {
    activation: Activation<Self>,
    deps: CartDeps,
    cart: Option<Cart>,
}

impl Actor for CartActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.activation.started(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.activation.stopped();
    }
}

impl Handler<Passivate> for CartActor {
    type Result = ();

    fn handle(&mut self, _: Passivate, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Entity for CartActor {
    type Key = String;
    type Deps = CartDeps;

    fn new(_key: String, deps: CartDeps, activation: Activation<Self>) -> Self {
        Self { activation, deps, cart: None }
    }

    fn activation(&mut self) -> &mut Activation<Self> {
        &mut self.activation
    }
}

impl Handler<CartCommand> for CartActor {
    type Result = AtomicResponse<Self, Result<CartOutcome, CartError>>;

    fn handle(&mut self, cmd: CartCommand, _ctx: &mut Self::Context) -> Self::Result {
        entity::run(self, cmd)
    }
}

impl WriteThrough for CartActor {
    type State = Cart;
    type Command = CartCommand;
    type Write = CartWrite;
    type Extra = Option<Uuid>;
    type Answer = CartOutcome;
    type Error = CartError;

    fn cache(&mut self) -> &mut Option<Cart> {
        &mut self.cart
    }

    fn deps(&self) -> &CartDeps {
        &self.deps
    }

    async fn load(deps: &CartDeps, username: &String) -> Result<Cart, CartError> {
        Ok(deps.store.load(username).await?)
    }

    async fn decide(
        deps: &CartDeps,
        cart: &mut Cart,
        cmd: CartCommand,
    ) -> Result<Decision<CartWrite, Option<Uuid>>, CartError> {
        decide(cart, cmd, &*deps.store, deps.lease_ttl).await
    }

    async fn save(deps: &CartDeps, cart: &Cart, write: CartWrite) -> Result<i64, StoreError> {
        if write.hold_only && cart.version > 0 {
            deps.store.save_hold(cart).await
        } else if let Some(products) = write.lines.as_deref().filter(|_| cart.version > 0) {
            deps.store.save_lines(cart, products, write.applied_order).await
        } else {
            deps.store.save(cart, write.applied_order).await
        }
    }

    fn set_version(cart: &mut Cart, version: i64) {
        cart.version = version;
    }

    fn answer(cart: Cart, checkout_id: Option<Uuid>) -> CartOutcome {
        CartOutcome { cart, checkout_id }
    }

    fn is_refusal(e: &CartError) -> bool {
        matches!(
            e,
            CartError::Empty
                | CartError::CheckoutInProgress
                | CartError::NotInCart(_)
                | CartError::TotalTooLarge(_)
        )
    }

    fn is_store_error(e: &CartError) -> bool {
        matches!(e, CartError::Store(_))
    }
}

/// What a cart save stores beside the cart.
pub(crate) struct CartWrite {
    /// The order whose checkout this write takes out of the cart.
    applied_order: Option<i64>,
    /// Nothing but the checkout hold changed.
    hold_only: bool,
    /// Only the lines of these products changed (with the hold, if it did); `None`: any may have.
    lines: Option<Vec<i64>>,
}

/// Applies one command to `cart`: whether it must be stored, and the checkout id the command
/// began.
async fn decide(
    cart: &mut Cart,
    cmd: CartCommand,
    store: &dyn CartStore,
    ttl: Duration,
) -> Result<Decision<CartWrite, Option<Uuid>>, CartError> {
    let write = || Decision::Changed(CartWrite { applied_order: None, hold_only: false, lines: None }, None);
    let line = |product_id| {
        Decision::Changed(
            CartWrite { applied_order: None, hold_only: false, lines: Some(vec![product_id]) },
            None,
        )
    };
    let hold = |id| Decision::Changed(CartWrite { applied_order: None, hold_only: true, lines: None }, id);
    let decision = match cmd {
        CartCommand::Get => Decision::Unchanged(None),
        CartCommand::Add { product, quantity } => {
            check_quantity(u64::from(quantity))?;
            match cart.items.iter_mut().find(|i| i.product_id == product.id) {
                Some(item) => {
                    let total = u64::from(item.quantity) + u64::from(quantity);
                    item.quantity = check_quantity(total)?;
                    item.product_name = product.name;
                    item.price = product.price;
                }
                None => cart.items.push(CartItem {
                    product_id: product.id,
                    product_name: product.name,
                    price: product.price,
                    quantity,
                    added_at: Utc::now().trunc_subsecs(6),
                }),
            }
            check_total(cart)?;
            line(product.id)
        }
        CartCommand::SetQuantity { product_id, quantity } => {
            let pos = position(cart, product_id)?;
            if quantity == 0 {
                cart.items.remove(pos);
            } else {
                cart.items[pos].quantity = check_quantity(u64::from(quantity))?;
                check_total(cart)?;
            }
            line(product_id)
        }
        CartCommand::Remove { product_id } => {
            let pos = position(cart, product_id)?;
            cart.items.remove(pos);
            line(product_id)
        }
        CartCommand::Clear => {
            if cart.items.is_empty() {
                Decision::Unchanged(None)
            } else {
                cart.items.clear();
                write()
            }
        }
        CartCommand::BeginCheckout { completed } => {
            match completed.filter(|c| cart.checkout.is_some_and(|h| h.id == c.checkout_id)) {
                None => hold(Some(begin_checkout(cart, ttl)?)),
                // Still held by the PAID checkout before: its items leave the cart in the same
                // write as the new hold, recorded as applied (its event then changes nothing).
                Some(done) => {
                    cart.checkout = None;
                    let lines = take_out(cart, &done.items);
                    let id = begin_checkout(cart, ttl)?;
                    Decision::Changed(
                        CartWrite {
                            applied_order: Some(done.order_id),
                            hold_only: false,
                            lines: Some(lines),
                        },
                        Some(id),
                    )
                }
            }
        }
        CartCommand::ReleaseCheckout { checkout_id } => {
            if cart.checkout.is_some_and(|h| h.id == checkout_id) {
                cart.checkout = None;
                hold(None)
            } else {
                Decision::Unchanged(None)
            }
        }
        CartCommand::ApplyCheckout { order_id, items, checkout_id } => {
            let releases = checkout_id.is_some() && cart.checkout.map(|h| h.id) == checkout_id;
            if releases {
                cart.checkout = None;
            }
            // A cart still held by this very checkout has not had it applied: applying clears
            // the hold in the same write, and a hold's id is never used again. Only otherwise is
            // the store asked (a stale cache is caught by the version on the write).
            if !releases && store.checkout_applied(&cart.username, order_id).await?.is_some() {
                Decision::Unchanged(None)
            } else {
                let lines = take_out(cart, &items);
                Decision::Changed(
                    CartWrite { applied_order: Some(order_id), hold_only: false, lines: Some(lines) },
                    None,
                )
            }
        }
    };
    Ok(decision)
}

/// Takes a completed order's items out of `cart`; the products whose lines that changed.
fn take_out(cart: &mut Cart, items: &[LineQuantity]) -> Vec<i64> {
    let lines = items
        .iter()
        .map(|l| l.product_id)
        .filter(|id| cart.items.iter().any(|i| i.product_id == *id))
        .collect();
    cart.subtract(items);
    lines
}

/// Holds the cart for a new checkout, answering its id: refused while another checkout holds it
/// and when there is nothing to check out.
fn begin_checkout(cart: &mut Cart, ttl: Duration) -> Result<Uuid, CartError> {
    let now = Utc::now();
    if cart.active_checkout(now).is_some() {
        return Err(CartError::CheckoutInProgress);
    }
    if cart.is_empty() {
        return Err(CartError::Empty);
    }
    let id = Uuid::new_v4();
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    cart.checkout = Some(CheckoutHold { id, expires_at: now.checked_add_signed(ttl).unwrap_or(now) });
    Ok(id)
}

fn check_quantity(q: u64) -> Result<u32, CartError> {
    match u32::try_from(q) {
        Ok(q) if (1..=MAX_LINE_QUANTITY).contains(&q) => Ok(q),
        _ => Err(CartError::QuantityOutOfRange(q)),
    }
}

/// Refuses a cart whose total no order could hold. The cart is the working copy of a command
/// that is being refused: the actor's cache never keeps it.
fn check_total(cart: &Cart) -> Result<(), CartError> {
    match cart.checked_total() {
        Some(total) if total <= max_amount() => Ok(()),
        Some(total) => Err(CartError::TotalTooLarge(total)),
        None => Err(CartError::TotalTooLarge(Decimal::MAX)),
    }
}

fn position(cart: &Cart, product_id: i64) -> Result<usize, CartError> {
    cart.items.iter().position(|i| i.product_id == product_id).ok_or(CartError::NotInCart(product_id))
}

/// All carts of this process: the handle the Cart service and the saga use. Cheap to clone.
#[derive(Clone)]
pub struct Carts {
    registry: Registry<CartActor>,
    /// From an order event's writing (its `occurred_at`) to its outcome applied to the cart.
    event_latency: Arc<crate::durations::Durations>,
}

impl Carts {
    pub fn new(runtime: Arc<ActorRuntime>, store: Arc<dyn CartStore>, config: CartConfig) -> Self {
        let deps = CartDeps { store, lease_ttl: config.lease_ttl };
        Self { registry: Registry::new(runtime, deps, config.registry), event_latency: Default::default() }
    }

    pub(crate) async fn execute(&self, username: &str, cmd: CartCommand) -> Result<CartOutcome, CartError> {
        self.registry.send(&username.to_owned(), cmd).await?
    }

    async fn run(&self, username: &str, cmd: CartCommand) -> Result<Cart, CartError> {
        Ok(self.execute(username, cmd).await?.cart)
    }

    pub async fn get(&self, username: &str) -> Result<Cart, CartError> {
        self.run(username, CartCommand::Get).await
    }

    pub async fn add(
        &self,
        username: &str,
        product: ProductSnapshot,
        quantity: u32,
    ) -> Result<Cart, CartError> {
        self.run(username, CartCommand::Add { product, quantity }).await
    }

    pub async fn set_quantity(
        &self,
        username: &str,
        product_id: i64,
        quantity: u32,
    ) -> Result<Cart, CartError> {
        self.run(username, CartCommand::SetQuantity { product_id, quantity }).await
    }

    pub async fn remove(&self, username: &str, product_id: i64) -> Result<Cart, CartError> {
        self.run(username, CartCommand::Remove { product_id }).await
    }

    pub async fn clear(&self, username: &str) -> Result<Cart, CartError> {
        self.run(username, CartCommand::Clear).await
    }

    pub fn stats(&self) -> RegistryStats {
        self.registry.stats()
    }

    /// How long order outcomes took to reach the carts: from the event's writing in the order
    /// store to the cart changed by it (in distributed mode: the outbox, the relay, Kafka and
    /// the consumer).
    pub fn event_latency(&self) -> crate::durations::DurationSnapshot {
        self.event_latency.snapshot()
    }

    /// Passivates the user's cart actor now if one is live (its state stays in storage; the
    /// next command reloads it). Answers whether one was live.
    pub async fn passivate(&self, username: &str) -> bool {
        self.registry.passivate(&username.to_owned()).await
    }

    /// The registry of cart actors, for tests and benchmarks that look at activation itself.
    #[cfg(feature = "test-support")]
    pub fn registry(&self) -> &Registry<CartActor> {
        &self.registry
    }
}

impl From<CartError> for CartPortError {
    fn from(e: CartError) -> Self {
        match e {
            CartError::Empty => CartPortError::Empty,
            CartError::CheckoutInProgress => CartPortError::CheckoutInProgress,
            other => CartPortError::Unavailable(other.to_string()),
        }
    }
}

#[async_trait]
impl CartPort for Carts {
    async fn begin_checkout(
        &self,
        username: &str,
        completed: Option<CompletedCheckout>,
    ) -> Result<CheckoutLease, CartPortError> {
        let outcome = self.execute(username, CartCommand::BeginCheckout { completed }).await?;
        let checkout_id = outcome
            .checkout_id
            .ok_or_else(|| CartPortError::Unavailable("the cart began no checkout".into()))?;
        Ok(CheckoutLease { checkout_id, items: outcome.cart.items })
    }

    async fn release_checkout(&self, username: &str, checkout_id: Uuid) -> Result<(), CartPortError> {
        self.execute(username, CartCommand::ReleaseCheckout { checkout_id }).await?;
        Ok(())
    }
}

/// The Cart service's side of `ORDER_EVENTS`: a completed order's items leave the cart (once,
/// however often the event arrives); a cancelled order leaves the cart as it is.
#[async_trait]
impl EventHandler for Carts {
    async fn handle(&self, event: &OrderEvent) -> Result<(), BusError> {
        let cmd = match event.event_type {
            OrderEventType::OrderCompleted => CartCommand::ApplyCheckout {
                order_id: event.order_id,
                items: event.items.clone(),
                checkout_id: event.checkout_id,
            },
            OrderEventType::OrderCancelled => match event.checkout_id {
                Some(checkout_id) => CartCommand::ReleaseCheckout { checkout_id },
                None => return Ok(()),
            },
            OrderEventType::OrderCreated => return Ok(()),
        };
        crate::fault::point("after-event");
        self.execute(&event.username, cmd).await.map_err(|e| BusError(e.to_string()))?;
        self.event_latency.observe((Utc::now() - event.occurred_at).to_std().unwrap_or_default());
        Ok(())
    }
}
