//! The cart actor: one per username, owning that user's cart.
//!
//! Every command runs as an [`AtomicResponse`]: while one command awaits storage, no other command
//! of the same cart starts, so two adds never read the same old state. The cart is cached in the
//! actor after the first load and written through to the [`CartStore`] on every change; a store
//! error drops the cache, so the next command rebuilds it from storage.
//!
//! A checkout holds the cart ([`crate::model::CheckoutHold`], stored with the cart): it stops a
//! second checkout of the same cart while one runs, in this process or another, and lapses after
//! [`CartConfig::lease_ttl`] in case the saga never comes back.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use crate::model::{
    Cart, CartItem, CheckoutHold, LineQuantity, MAX_LINE_QUANTITY, OrderEvent, OrderEventType,
    ProductSnapshot,
};
use crate::ports::{BusError, CartPort, CartPortError, CartStore, CheckoutLease, EventHandler, StoreError};
use crate::registry::{
    Activation, CONFLICT_ATTEMPTS, Entity, Passivate, Registry, RegistryConfig, RegistryError, RegistryStats,
    conflict_backoff,
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
    /// Hands the cart to a checkout and holds it until released or applied.
    BeginCheckout,
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
        self.activation.touch();
        let store = self.deps.store.clone();
        let ttl = self.deps.lease_ttl;
        let username = self.activation.key().clone();
        // Commands run one at a time, so the cache can be lent to this one and put back after.
        let mut cached = self.cart.take();
        let work = async move {
            let mut last_conflict = None;
            for attempt in 0..CONFLICT_ATTEMPTS {
                let (mut cart, fresh) = match cached.take() {
                    Some(cart) => (cart, false),
                    None => (store.load(&username).await?, true),
                };
                let decided = decide(&mut cart, cmd.clone(), &*store, ttl).await;
                match decided {
                    Ok((Change::Write { applied_order, hold_only }, checkout_id)) => {
                        let saved = if hold_only && cart.version > 0 {
                            store.save_hold(&cart).await
                        } else {
                            store.save(&cart, applied_order).await
                        };
                        match saved {
                            Ok(version) => {
                                cart.version = version;
                                return Ok((cart, checkout_id));
                            }
                            Err(StoreError::Conflict(e)) => {
                                // The first retry reloads at once (a stale cache is the usual cause);
                                // later ones back off, since another writer is busy on this cart.
                                if attempt > 0 {
                                    conflict_backoff(attempt).await;
                                }
                                last_conflict = Some(StoreError::Conflict(e));
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    // Reads, no-ops and refusals write nothing, so no version check would catch a
                    // stale cache (another process may have changed the cart): they are answered
                    // from freshly loaded state only.
                    Ok(_)
                    | Err(CartError::Empty | CartError::CheckoutInProgress | CartError::NotInCart(_))
                        if !fresh => {}
                    Ok((Change::None, checkout_id)) => return Ok((cart, checkout_id)),
                    Err(e) => return Err(e),
                }
            }
            Err(last_conflict.unwrap_or(StoreError::Conflict(username)).into())
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|res, act, _ctx| match res {
            Ok((cart, checkout_id)) => {
                act.cart = Some(cart.clone());
                Ok(CartOutcome { cart, checkout_id })
            }
            Err(e) => {
                if matches!(e, CartError::Store(_)) {
                    act.cart = None;
                }
                Err(e)
            }
        })))
    }
}

enum Change {
    None,
    /// Store the cart; `hold_only` when nothing but the checkout hold changed.
    Write {
        applied_order: Option<i64>,
        hold_only: bool,
    },
}

/// Applies one command to `cart`, returning whether it must be stored and the checkout id the
/// command began.
async fn decide(
    cart: &mut Cart,
    cmd: CartCommand,
    store: &dyn CartStore,
    ttl: Duration,
) -> Result<(Change, Option<Uuid>), CartError> {
    let write = Change::Write { applied_order: None, hold_only: false };
    let hold = Change::Write { applied_order: None, hold_only: true };
    let now = Utc::now();
    let change = match cmd {
        CartCommand::Get => Change::None,
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
                }),
            }
            write
        }
        CartCommand::SetQuantity { product_id, quantity } => {
            let pos = position(cart, product_id)?;
            if quantity == 0 {
                cart.items.remove(pos);
            } else {
                cart.items[pos].quantity = check_quantity(u64::from(quantity))?;
            }
            write
        }
        CartCommand::Remove { product_id } => {
            let pos = position(cart, product_id)?;
            cart.items.remove(pos);
            write
        }
        CartCommand::Clear => {
            if cart.items.is_empty() {
                Change::None
            } else {
                cart.items.clear();
                write
            }
        }
        CartCommand::BeginCheckout => {
            if cart.active_checkout(now).is_some() {
                return Err(CartError::CheckoutInProgress);
            }
            if cart.is_empty() {
                return Err(CartError::Empty);
            }
            let id = Uuid::new_v4();
            let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
            cart.checkout = Some(CheckoutHold { id, expires_at: now.checked_add_signed(ttl).unwrap_or(now) });
            return Ok((hold, Some(id)));
        }
        CartCommand::ReleaseCheckout { checkout_id } => {
            if cart.checkout.is_some_and(|h| h.id == checkout_id) {
                cart.checkout = None;
                hold
            } else {
                Change::None
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
            if !releases && store.checkout_applied(&cart.username, order_id).await? {
                Change::None
            } else {
                cart.subtract(&items);
                Change::Write { applied_order: Some(order_id), hold_only: false }
            }
        }
    };
    Ok((change, None))
}

fn check_quantity(q: u64) -> Result<u32, CartError> {
    match u32::try_from(q) {
        Ok(q) if (1..=MAX_LINE_QUANTITY).contains(&q) => Ok(q),
        _ => Err(CartError::QuantityOutOfRange(q)),
    }
}

fn position(cart: &Cart, product_id: i64) -> Result<usize, CartError> {
    cart.items.iter().position(|i| i.product_id == product_id).ok_or(CartError::NotInCart(product_id))
}

/// All carts of this process: the handle the Cart service and the saga use. Cheap to clone.
#[derive(Clone)]
pub struct Carts {
    registry: Registry<CartActor>,
}

impl Carts {
    pub fn new(runtime: Arc<ActorRuntime>, store: Arc<dyn CartStore>, config: CartConfig) -> Self {
        let deps = CartDeps { store, lease_ttl: config.lease_ttl };
        Self { registry: Registry::new(runtime, deps, config.registry) }
    }

    pub async fn execute(&self, username: &str, cmd: CartCommand) -> Result<CartOutcome, CartError> {
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

    /// The registry of cart actors, for hosts that manage activation themselves.
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
    async fn begin_checkout(&self, username: &str) -> Result<CheckoutLease, CartPortError> {
        let outcome = self.execute(username, CartCommand::BeginCheckout).await?;
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
        self.execute(&event.username, cmd).await.map(|_| ()).map_err(|e| BusError(e.to_string()))
    }
}
