//! The core in two halves a host composes, and [`Core`], the two together.
//!
//! - [`CartSide`]: the cart actors, started from a [`CartStore`]. It offers the Order side its
//!   [`CartPort`] and takes `ORDER_EVENTS` as an [`EventHandler`].
//! - [`OrderSide`]: the order actors, the payment pool, the outbox relay, the checkout saga and
//!   its recovery, started from a [`CartPort`], a [`StockPort`], an [`OrderStore`], a
//!   [`PaymentGateway`] and an [`EventBus`].
//!
//! In one process ([`Core::start`]) the Order side reaches the carts through the Cart side
//! itself; a host that runs the two in different processes starts one half in each, with an
//! [`ActorRuntime`] of its own, and puts a client of the other process behind the port.

use std::io;
use std::sync::Arc;

use crate::bus::InProcessBus;
use crate::cart::{CartConfig, Carts};
use crate::order::Orders;
use crate::outbox::{Outbox, OutboxConfig};
use crate::payment_pool::{PaymentPool, PaymentPoolConfig};
use crate::ports::{CartPort, CartStore, EventBus, EventHandler, OrderStore, PaymentGateway, StockPort};
use crate::recovery::{Recovery, RecoveryConfig};
use crate::registry::RegistryConfig;
use crate::runtime::ActorRuntime;
use crate::saga::{Checkouts, SagaConfig, SagaPorts};

/// The carts of this process.
#[derive(Clone)]
pub struct CartSide {
    pub carts: Carts,
}

impl CartSide {
    pub fn start(runtime: Arc<ActorRuntime>, store: Arc<dyn CartStore>, config: CartConfig) -> Self {
        Self { carts: Carts::new(runtime, store, config) }
    }

    /// The carts as the Order side leases them.
    pub fn port(&self) -> Arc<dyn CartPort> {
        Arc::new(self.carts.clone())
    }

    /// The carts' side of `ORDER_EVENTS`: subscribe it to the bus that carries them.
    pub fn handler(&self) -> Arc<dyn EventHandler> {
        Arc::new(self.carts.clone())
    }
}

#[derive(Debug, Clone, Default)]
pub struct OrderSideConfig {
    pub orders: RegistryConfig,
    pub payments: PaymentPoolConfig,
    pub saga: SagaConfig,
    pub outbox: OutboxConfig,
    pub recovery: RecoveryConfig,
}

/// What the Order side is started from.
pub struct OrderPorts {
    /// Where carts are leased: [`CartSide::port`] in one process, a client of the Cart service
    /// otherwise.
    pub carts: Arc<dyn CartPort>,
    /// Where checkouts reserve stock: the Product service, in process or over HTTP.
    pub stock: Arc<dyn StockPort>,
    pub store: Arc<dyn OrderStore>,
    pub gateway: Arc<dyn PaymentGateway>,
    /// Where the outbox relay publishes order events.
    pub bus: Arc<dyn EventBus>,
}

/// The orders of this process and the checkouts that make them.
#[derive(Clone)]
pub struct OrderSide {
    pub orders: Orders,
    pub payments: PaymentPool,
    pub checkouts: Checkouts,
    pub outbox: Outbox,
    pub recovery: Recovery,
}

impl OrderSide {
    pub fn start(runtime: &Arc<ActorRuntime>, ports: OrderPorts, config: OrderSideConfig) -> Self {
        let orders = Orders::new(runtime.clone(), ports.store.clone(), config.orders);
        let payments = PaymentPool::start(runtime, ports.gateway.clone(), config.payments);
        let outbox = Outbox::start(runtime, ports.store, ports.bus, config.outbox);
        let saga = SagaPorts {
            carts: ports.carts,
            stock: ports.stock.clone(),
            gateway: ports.gateway.clone(),
            orders: orders.clone(),
            pool: payments.clone(),
            outbox: outbox.clone(),
        };
        let checkouts = Checkouts::start(runtime, saga, config.saga);
        let recovery = Recovery::start(
            runtime,
            orders.clone(),
            ports.gateway,
            ports.stock,
            outbox.clone(),
            config.recovery,
        );
        Self { orders, payments, checkouts, outbox, recovery }
    }
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Arbiter threads the entity actors are spread over.
    pub arbiters: usize,
    pub carts: CartConfig,
    pub order: OrderSideConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            arbiters: std::thread::available_parallelism().map_or(2, |n| n.get()),
            carts: CartConfig::default(),
            order: OrderSideConfig::default(),
        }
    }
}

/// Both halves in one process. Dropping it (or [`Core::shutdown`]) stops every actor.
pub struct Core {
    pub runtime: Arc<ActorRuntime>,
    pub cart: CartSide,
    pub order: OrderSide,
}

impl Core {
    /// Starts the runtime and both halves; the saga leases carts from the Cart side directly.
    /// Events go to `bus` (subscribe [`CartSide::handler`] to it to have carts react to them).
    pub fn start(
        config: CoreConfig,
        cart_store: Arc<dyn CartStore>,
        order_store: Arc<dyn OrderStore>,
        gateway: Arc<dyn PaymentGateway>,
        stock: Arc<dyn StockPort>,
        bus: Arc<dyn EventBus>,
    ) -> io::Result<Self> {
        let runtime = Arc::new(ActorRuntime::start(config.arbiters)?);
        let cart = CartSide::start(runtime.clone(), cart_store, config.carts);
        let ports = OrderPorts { carts: cart.port(), stock, store: order_store, gateway, bus };
        let order = OrderSide::start(&runtime, ports, config.order);
        Ok(Self { runtime, cart, order })
    }

    /// An in-memory core wired to an [`InProcessBus`] on which the carts already listen, with
    /// unlimited stock ([`crate::memory::MemoryStock::unlimited`]).
    pub fn in_memory(
        config: CoreConfig,
        gateway: Arc<dyn PaymentGateway>,
    ) -> io::Result<(Self, Arc<InProcessBus>)> {
        let bus = Arc::new(InProcessBus::new());
        let core = Self::start(
            config,
            Arc::new(crate::memory::MemoryCartStore::default()),
            Arc::new(crate::memory::MemoryOrderStore::default()),
            gateway,
            Arc::new(crate::memory::MemoryStock::unlimited()),
            bus.clone(),
        )?;
        bus.subscribe(core.cart.handler());
        Ok((core, bus))
    }

    pub fn shutdown(&self) {
        self.runtime.shutdown();
    }
}
