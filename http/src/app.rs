//! Embedded mode (`shop run`): five databases, the actor core and five HTTP listeners in one
//! process, events on the in-process bus.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shop_actors::Core;
use shop_actors::bus::InProcessBus;
use shop_services::auth::{JwtKeys, load_or_create_secret};
use shop_services::cart::CartService;
use shop_services::history::HistorySource;
use shop_services::order::OrderService;
use shop_services::storage::Database;
use shop_services::tools::audit::{AuditOptions, AuditReport};
use shop_services::{Service, ServiceError};

use crate::config::RunConfig;
use crate::frontends::{self, Check, Frontend, Servers, StartError};
use crate::gateway::{Gateway, Upstream};

/// The five service databases.
#[derive(Clone, Debug)]
pub struct Databases {
    pub auth: Database,
    pub product: Database,
    pub cart: Database,
    pub payment: Database,
    pub order: Database,
}

impl Databases {
    async fn open(config: &RunConfig) -> Result<Self, StartError> {
        let open = |service| frontends::open_database(config, service);
        Ok(Self {
            auth: open(Service::Auth).await?,
            product: open(Service::Product).await?,
            cart: open(Service::Cart).await?,
            payment: open(Service::Payment).await?,
            order: open(Service::Order).await?,
        })
    }

    fn get(&self, service: Service) -> &Database {
        match service {
            Service::Auth => &self.auth,
            Service::Product => &self.product,
            Service::Cart => &self.cart,
            Service::Payment => &self.payment,
            Service::Order => &self.order,
        }
    }

    async fn close(&self) {
        for db in [&self.auth, &self.product, &self.cart, &self.payment, &self.order] {
            db.close().await;
        }
    }

    /// Checks the cross-database invariants (see `shop_services::tools::audit`).
    pub async fn audit(&self) -> Result<AuditReport, ServiceError> {
        let (products, payments, orders) =
            (self.product.products(), self.payment.payments(), self.order.orders());
        shop_services::tools::audit::audit(&*products, &*payments, &*orders, &AuditOptions::default()).await
    }
}

/// The running embedded system. Tests build it on port 0 with a fresh data dir.
pub struct Application {
    servers: Servers,
    core: Core,
    databases: Databases,
    bus: Arc<InProcessBus>,
    grace: Duration,
}

/// How long a stopping system waits for the outbox's last events to go out.
const OUTBOX_FLUSH: Duration = Duration::from_secs(5);

impl Application {
    /// Opens and migrates the databases, starts the actor core, binds the five listeners and
    /// starts serving. Returns once every service accepts connections.
    pub async fn build(config: RunConfig) -> Result<Self, StartError> {
        let mut listeners = Vec::new();
        for service in Service::ALL {
            listeners.push(frontends::bind(config.host, service, config.port(service)).await?);
        }
        let gateway_listener = frontends::bind_gateway(config.host, config.gateway_port).await?;
        let databases = Databases::open(&config).await?;
        let secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => load_or_create_secret(&config.storage.data_dir.join("jwt-secret"))?,
        };
        let keys = JwtKeys::new(&secret, Duration::from_secs(config.jwt_ttl_secs))?;

        let products = frontends::product(&config, &databases.product).await?;
        let payments = frontends::payment(&config, &databases.payment)?;
        let bus = Arc::new(InProcessBus::new());
        let (carts, orders) = (databases.cart.carts(), databases.order.orders());
        let core = Core::start(
            frontends::core_config(&config),
            carts,
            orders,
            Arc::new(payments.clone()),
            Arc::new(products.clone()),
            bus.clone(),
        )?;
        bus.subscribe(core.cart.handler());

        let carts =
            CartService::new(core.cart.carts.clone(), Arc::new(products.clone()), databases.cart.carts());
        let history: Vec<Arc<dyn HistorySource>> =
            vec![Arc::new(products.clone()), Arc::new(payments.clone()), Arc::new(carts.clone())];
        let services = [
            Frontend::Auth(
                Box::new(frontends::auth(&config, &databases.auth, &keys).await?),
                frontends::trusted_proxies(&config),
            ),
            Frontend::Product(products.clone()),
            Frontend::Cart(carts),
            Frontend::Payment(payments),
            Frontend::Order(OrderService::new(&core.order, databases.order.orders(), history)),
        ];
        let mut servers = Servers::new();
        servers.background(products.clone().sweep_forever());
        let mut upstreams = Vec::new();
        for ((service, listener), frontend) in Service::ALL.into_iter().zip(listeners).zip(services) {
            let checks = vec![Check::database(databases.get(service))];
            let figures = vec![frontends::database_figures(databases.get(service))];
            let router = servers.spawn(service, listener, frontend, &keys, checks, figures)?;
            // The gateway calls the services in-process; Payment it does not expose.
            if service != Service::Payment {
                upstreams.push((service, Upstream::Local(router)));
            }
        }
        let gateway = Gateway::new(upstreams, Duration::from_millis(config.gateway_timeout_ms))
            .map_err(|e| StartError::Config(format!("the gateway's HTTP client: {e}")))?;
        servers.serve(None, gateway_listener, gateway.router())?;
        Ok(Self { servers, core, databases, bus, grace: config.shutdown_grace() })
    }

    pub fn addr(&self, service: Service) -> SocketAddr {
        self.addrs().into_iter().find(|(s, _)| *s == service).map(|(_, a)| a).unwrap_or_else(|| {
            // Every service is bound in `build`; this cannot be reached.
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    /// Where the gateway and storefront listen.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.servers.gateway_addr().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn addrs(&self) -> Vec<(Service, SocketAddr)> {
        self.servers.addrs()
    }

    /// The in-process event bus (subscribe to see ORDER_EVENTS).
    pub fn bus(&self) -> &Arc<InProcessBus> {
        &self.bus
    }

    pub fn databases(&self) -> &Databases {
        &self.databases
    }

    /// Serves until `signal` resolves (or a server fails), then stops gracefully.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let result = self.servers.run_until(signal).await;
        self.stop().await;
        result
    }

    /// Stops accepting requests, lets in-flight ones finish, stops the actors and closes the
    /// databases.
    pub async fn stop(mut self) {
        self.servers.stop(self.grace).await;
        // Events still in the outbox go out now rather than at the next start.
        if let Err(e) = self.core.order.outbox.flush(OUTBOX_FLUSH).await {
            tracing::warn!(error = %e, "events left in the outbox; they go out at the next start");
        }
        let runtime = self.core.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || runtime.shutdown()).await;
        self.databases.close().await;
    }
}
