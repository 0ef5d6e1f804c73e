//! One call that starts the whole core: the runtime, carts, orders, the payment pool and the saga.

use std::io;
use std::sync::Arc;

use crate::bus::InProcessBus;
use crate::cart::{CartConfig, Carts};
use crate::order::Orders;
use crate::outbox::{Outbox, OutboxConfig};
use crate::payment_pool::{PaymentPool, PaymentPoolConfig};
use crate::ports::{CartPort, CartStore, EventBus, OrderStore, PaymentGateway};
use crate::registry::RegistryConfig;
use crate::runtime::ActorRuntime;
use crate::saga::{Checkouts, SagaConfig};

#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Arbiter threads the entity actors are spread over.
    pub arbiters: usize,
    pub carts: CartConfig,
    pub orders: RegistryConfig,
    pub payments: PaymentPoolConfig,
    pub saga: SagaConfig,
    pub outbox: OutboxConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            arbiters: std::thread::available_parallelism().map_or(2, |n| n.get()),
            carts: CartConfig::default(),
            orders: RegistryConfig::default(),
            payments: PaymentPoolConfig::default(),
            saga: SagaConfig::default(),
            outbox: OutboxConfig::default(),
        }
    }
}

/// The running core. Dropping it (or [`Core::shutdown`]) stops every actor.
pub struct Core {
    pub runtime: Arc<ActorRuntime>,
    pub carts: Carts,
    pub orders: Orders,
    pub payments: PaymentPool,
    pub checkouts: Checkouts,
    pub outbox: Outbox,
}

impl Core {
    /// Starts the core with carts and orders in this process. The saga reaches the carts through
    /// the [`Carts`] handle itself; events go to `bus`.
    pub fn start(
        config: CoreConfig,
        cart_store: Arc<dyn CartStore>,
        order_store: Arc<dyn OrderStore>,
        gateway: Arc<dyn PaymentGateway>,
        bus: Arc<dyn EventBus>,
    ) -> io::Result<Self> {
        let runtime = Arc::new(ActorRuntime::start(config.arbiters)?);
        let carts = Carts::new(runtime.clone(), cart_store, config.carts);
        let orders = Orders::new(runtime.clone(), order_store.clone(), config.orders);
        let payments = PaymentPool::start(&runtime, gateway, config.payments);
        let outbox = Outbox::start(&runtime, order_store, bus, config.outbox);
        let cart_port: Arc<dyn CartPort> = Arc::new(carts.clone());
        let checkouts = Checkouts::start(
            &runtime,
            cart_port,
            orders.clone(),
            payments.clone(),
            outbox.clone(),
            config.saga,
        );
        Ok(Self { runtime, carts, orders, payments, checkouts, outbox })
    }

    /// An in-memory core wired to an [`InProcessBus`] on which the carts already listen.
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
            bus.clone(),
        )?;
        bus.subscribe(Arc::new(core.carts.clone()));
        Ok((core, bus))
    }

    pub fn shutdown(&self) {
        self.runtime.shutdown();
    }
}
