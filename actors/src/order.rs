//! The order actor: one per order id, owning that order's status.
//!
//! Status changes run on the write-through engine ([`crate::entity`]), one at a time per order,
//! and are checked against [`OrderStatus::can_become`], so the saga's PAID/CANCELLED and an
//! admin's SHIPPED can never both win from the same state. The store's version check does the
//! same across processes. This file holds only the order's decisions.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::entity::{self, Decision, WriteThrough};
use crate::model::{NewOrder, Order, OrderEvent, OrderStatus};
use crate::ports::{OrderStore, Page, StoreError};
use crate::registry::{
    Activation, Entity, Passivate, Registry, RegistryConfig, RegistryError, RegistryStats,
};
use crate::runtime::ActorRuntime;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} not found")]
    NotFound(i64),
    #[error("order {id} is {from} and cannot become {to}")]
    InvalidTransition { id: i64, from: OrderStatus, to: OrderStatus },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

#[derive(Debug, Clone)]
pub enum OrderCommand {
    Get,
    /// The steps after the order's outcome are done: `unsettled` cleared.
    Settled,
    /// Moves the order on; reaching PAID or CANCELLED also puts its event in the outbox, in the
    /// same write.
    Transition {
        change: Transition,
        /// The order as the sender last saw it: an actor with nothing cached starts from it
        /// instead of loading (the store's version check still refuses it if it is stale).
        known: Option<Box<Order>>,
        /// Stop the actor once the transition is stored: the saga's last word on an order, after
        /// which it is rarely touched again, so it should not sit in memory until it idles out.
        passivate: bool,
    },
}

/// A status change and what comes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub to: OrderStatus,
    /// The gateway's transaction id of the payment that paid the order.
    pub payment_id: Option<String>,
    pub failure_reason: Option<String>,
    /// An outcome whose later steps are still to be done (see `Order::unsettled`).
    pub unsettled: bool,
    /// The checkout the outcome event names, so that the cart lets go of exactly its hold.
    pub checkout_id: Option<Uuid>,
    /// The trace the outcome event carries (a `traceparent`): the checkout's.
    pub traceparent: Option<String>,
}

impl Transition {
    /// A change of status only (an admin shipping an order, say).
    pub fn to(to: OrderStatus) -> Self {
        Self {
            to,
            payment_id: None,
            failure_reason: None,
            unsettled: false,
            checkout_id: None,
            traceparent: None,
        }
    }
}

impl Message for OrderCommand {
    type Result = Result<Order, OrderError>;
}

pub struct OrderActor {
    activation: Activation<Self>,
    store: Arc<dyn OrderStore>,
    order: Option<Order>,
}

impl Actor for OrderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.activation.started(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.activation.stopped();
    }
}

impl Handler<Passivate> for OrderActor {
    type Result = ();

    fn handle(&mut self, _: Passivate, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Entity for OrderActor {
    type Key = i64;
    type Deps = Arc<dyn OrderStore>;

    fn new(_key: i64, store: Arc<dyn OrderStore>, activation: Activation<Self>) -> Self {
        Self { activation, store, order: None }
    }

    fn activation(&mut self) -> &mut Activation<Self> {
        &mut self.activation
    }
}

impl Handler<OrderCommand> for OrderActor {
    type Result = AtomicResponse<Self, Result<Order, OrderError>>;

    fn handle(&mut self, cmd: OrderCommand, _ctx: &mut Self::Context) -> Self::Result {
        entity::run(self, cmd)
    }
}

impl WriteThrough for OrderActor {
    type State = Order;
    type Command = OrderCommand;
    /// The outcome event that goes into the outbox with the change.
    type Write = Option<OrderEvent>;
    type Extra = ();
    type Answer = Order;
    type Error = OrderError;

    fn cache(&mut self) -> &mut Option<Order> {
        &mut self.order
    }

    fn deps(&self) -> &Arc<dyn OrderStore> {
        &self.store
    }

    async fn load(store: &Arc<dyn OrderStore>, id: &i64) -> Result<Order, OrderError> {
        store.load(*id).await?.ok_or(OrderError::NotFound(*id))
    }

    async fn decide(
        _store: &Arc<dyn OrderStore>,
        order: &mut Order,
        cmd: OrderCommand,
    ) -> Result<Decision<Option<OrderEvent>, ()>, OrderError> {
        let change = match cmd {
            OrderCommand::Get => return Ok(Decision::Unchanged(())),
            OrderCommand::Settled if order.unsettled => {
                order.unsettled = false;
                return Ok(Decision::Changed(None, ()));
            }
            OrderCommand::Settled => return Ok(Decision::Unchanged(())),
            OrderCommand::Transition { change, .. } => change,
        };
        let to = change.to;
        if !order.status.can_become(to) {
            return Err(OrderError::InvalidTransition { id: order.id, from: order.status, to });
        }
        order.status = to;
        order.payment_id = change.payment_id.or(order.payment_id.take());
        // Only `Settled` closes open steps: shipping an order whose stock commit is still open
        // keeps it open for recovery.
        order.unsettled |= change.unsettled;
        order.failure_reason = change.failure_reason.or(order.failure_reason.take());
        let event = OrderEvent::outcome(order, change.checkout_id).map(|e| e.in_trace(change.traceparent));
        Ok(Decision::Changed(event, ()))
    }

    async fn save(
        store: &Arc<dyn OrderStore>,
        order: &Order,
        event: Option<OrderEvent>,
    ) -> Result<i64, StoreError> {
        store.update(order, event.as_ref()).await
    }

    fn set_version(order: &mut Order, version: i64) {
        order.version = version;
    }

    fn answer(order: Order, (): ()) -> Order {
        order
    }

    fn is_refusal(e: &OrderError) -> bool {
        matches!(e, OrderError::InvalidTransition { .. })
    }

    fn is_store_error(e: &OrderError) -> bool {
        matches!(e, OrderError::Store(_))
    }

    fn is_missing(e: &OrderError) -> bool {
        matches!(e, OrderError::NotFound(_))
    }

    fn known(cmd: &OrderCommand, id: &i64) -> Option<Order> {
        match cmd {
            OrderCommand::Transition { known: Some(known), .. } if known.id == *id => Some((**known).clone()),
            _ => None,
        }
    }

    fn passivates_after(cmd: &OrderCommand) -> bool {
        matches!(cmd, OrderCommand::Transition { passivate: true, .. })
    }
}

/// All orders of this process: the handle the Order service and the saga use. Cheap to clone.
#[derive(Clone)]
pub struct Orders {
    registry: Registry<OrderActor>,
    store: Arc<dyn OrderStore>,
}

impl Orders {
    pub fn new(runtime: Arc<ActorRuntime>, store: Arc<dyn OrderStore>, config: RegistryConfig) -> Self {
        Self { registry: Registry::new(runtime, store.clone(), config), store }
    }

    pub async fn create(&self, order: NewOrder) -> Result<Order, OrderError> {
        Ok(self.store.create(order).await?)
    }

    pub async fn get(&self, id: i64) -> Result<Order, OrderError> {
        self.registry.send(&id, OrderCommand::Get).await?
    }

    pub async fn find_by_idempotency_key(
        &self,
        username: &str,
        key: &str,
    ) -> Result<Option<Order>, OrderError> {
        Ok(self.store.find_by_idempotency_key(username, key).await?)
    }

    /// A page of the user's orders, newest first, read straight from the store (one query, no
    /// actors).
    pub async fn list_for_user(&self, username: &str, page: Page) -> Result<Vec<Order>, OrderError> {
        Ok(self.store.list_for_user(username, page).await?)
    }

    pub async fn transition(&self, id: i64, change: Transition) -> Result<Order, OrderError> {
        let cmd = OrderCommand::Transition { change, known: None, passivate: false };
        self.registry.send(&id, cmd).await?
    }

    /// The saga's transition of the order it created to PAID or CANCELLED. A missing actor is
    /// activated next to the user's cart, starts from `order` instead of loading it, and stops
    /// once the outcome is stored.
    pub async fn settle(&self, order: &Order, change: Transition) -> Result<Order, OrderError> {
        let known = Some(Box::new(order.clone()));
        let cmd = OrderCommand::Transition { change, known, passivate: true };
        self.registry.send_near(&order.id, order.username.as_str(), cmd).await?
    }

    /// Records that the steps after the order's outcome are done (see `Order::unsettled`).
    pub async fn mark_settled(&self, id: i64) -> Result<Order, OrderError> {
        self.registry.send(&id, OrderCommand::Settled).await?
    }

    /// Checkouts left unfinished since before `before` (see [`OrderStore::unfinished`]).
    pub async fn unfinished(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Order>, OrderError> {
        Ok(self.store.unfinished(before, limit).await?)
    }

    /// The recovery lease of one order (see [`OrderStore::claim_recovery`]).
    pub async fn claim_recovery(
        &self,
        id: i64,
        owner: Uuid,
        until: DateTime<Utc>,
    ) -> Result<bool, OrderError> {
        Ok(self.store.claim_recovery(id, owner, until).await?)
    }

    pub fn stats(&self) -> RegistryStats {
        self.registry.stats()
    }
}
