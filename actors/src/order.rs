//! The order actor: one per order id, owning that order's status.
//!
//! Status changes run one at a time per order ([`AtomicResponse`]) and are checked against
//! [`OrderStatus::can_become`], so the saga's PAID/CANCELLED and an admin's SHIPPED can never
//! both win from the same state. The store's version check does the same across processes.

use std::sync::Arc;

use actix::prelude::*;

use uuid::Uuid;

use crate::model::{NewOrder, Order, OrderEvent, OrderStatus};
use crate::ports::{OrderStore, StoreError};
use crate::registry::{
    Activation, CONFLICT_ATTEMPTS, Entity, Passivate, Registry, RegistryConfig, RegistryError, RegistryStats,
    conflict_backoff,
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
    /// Moves the order on; reaching PAID or CANCELLED also puts its event in the outbox, in the
    /// same write, carrying `checkout_id`.
    Transition {
        to: OrderStatus,
        payment_id: Option<i64>,
        failure_reason: Option<String>,
        checkout_id: Option<Uuid>,
        /// The order as the sender last saw it: an actor with nothing cached starts from it
        /// instead of loading (the store's version check still refuses it if it is stale).
        known: Option<Box<Order>>,
        /// Stop the actor once the transition is stored: the saga's last word on an order, after
        /// which it is rarely touched again, so it should not sit in memory until it idles out.
        passivate: bool,
    },
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
        self.activation.touch();
        let id = *self.activation.key();
        let store = self.store.clone();
        let mut cached = self.order.take();
        let passivate = matches!(cmd, OrderCommand::Transition { passivate: true, .. });
        if let OrderCommand::Transition { known: Some(known), .. } = &cmd
            && cached.is_none()
            && known.id == id
        {
            cached = Some((**known).clone());
        }
        let work = async move {
            for attempt in 0..CONFLICT_ATTEMPTS {
                let (mut order, fresh) = match cached.take() {
                    Some(order) => (order, false),
                    None => (store.load(id).await?.ok_or(OrderError::NotFound(id))?, true),
                };
                // Reads and refusals write nothing, so no version check would catch a stale cache
                // (another process may have moved the order on): they use freshly loaded state.
                let OrderCommand::Transition { to, payment_id, failure_reason, checkout_id, .. } =
                    cmd.clone()
                else {
                    if fresh {
                        return Ok(order);
                    }
                    continue;
                };
                if !order.status.can_become(to) {
                    if fresh {
                        return Err(OrderError::InvalidTransition { id, from: order.status, to });
                    }
                    continue;
                }
                order.status = to;
                order.payment_id = payment_id.or(order.payment_id);
                order.failure_reason = failure_reason.or(order.failure_reason);
                let event = OrderEvent::outcome(&order, checkout_id);
                match store.update(&order, event.as_ref()).await {
                    Ok(version) => {
                        order.version = version;
                        return Ok(order);
                    }
                    // Another process changed the order: reload and judge the transition again.
                    Err(StoreError::Conflict(_)) => {
                        if attempt > 0 {
                            conflict_backoff(attempt).await;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(StoreError::Conflict(format!("order {id} kept changing under us")).into())
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(move |res, act, ctx| {
            match &res {
                Ok(_) if passivate => ctx.stop(),
                Ok(order) => act.order = Some(order.clone()),
                // Nothing to own: do not keep an actor alive for an id that does not exist.
                Err(OrderError::NotFound(_)) => ctx.stop(),
                Err(OrderError::Store(_)) => act.order = None,
                Err(_) => {}
            }
            res
        })))
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

    /// The user's orders, newest first, read straight from the store (one query, no actors).
    pub async fn list_for_user(&self, username: &str) -> Result<Vec<Order>, OrderError> {
        Ok(self.store.list_for_user(username).await?)
    }

    pub async fn transition(
        &self,
        id: i64,
        to: OrderStatus,
        payment_id: Option<i64>,
        failure_reason: Option<String>,
        checkout_id: Option<Uuid>,
    ) -> Result<Order, OrderError> {
        let cmd = OrderCommand::Transition {
            to,
            payment_id,
            failure_reason,
            checkout_id,
            known: None,
            passivate: false,
        };
        self.registry.send(&id, cmd).await?
    }

    /// The saga's transition of the order it created to PAID or CANCELLED. A missing actor is
    /// activated next to the user's cart, starts from `order` instead of loading it, and stops
    /// once the outcome is stored.
    pub async fn settle(
        &self,
        order: &Order,
        to: OrderStatus,
        payment_id: Option<i64>,
        failure_reason: Option<String>,
        checkout_id: Option<Uuid>,
    ) -> Result<Order, OrderError> {
        let known = Some(Box::new(order.clone()));
        let cmd =
            OrderCommand::Transition { to, payment_id, failure_reason, checkout_id, known, passivate: true };
        self.registry.send_near(&order.id, order.username.as_str(), cmd).await?
    }

    pub fn stats(&self) -> RegistryStats {
        self.registry.stats()
    }
}
