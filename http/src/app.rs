//! Building and running the embedded system: five databases, the actor core and five HTTP
//! listeners in one process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shop_actors::bus::InProcessBus;
use shop_actors::payment_pool::PaymentPoolConfig;
use shop_actors::{Core, CoreConfig};
use shop_services::ServiceError;
use shop_services::audit::AuditReport;
use shop_services::auth::{AuthConfig, AuthService, JwtKeys, load_or_create_secret};
use shop_services::cart::CartService;
use shop_services::db::{Database, PoolConfig, Service};
use shop_services::order::OrderService;
use shop_services::payment::{GatewayConfig, MockGateway, PaymentService};
use shop_services::product::ProductService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::RunConfig;
use crate::routes;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr} for the {service} service: {source}")]
    Bind { service: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("starting the actor runtime: {0}")]
    Io(#[from] std::io::Error),
}

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
        ensure_data_dir(config)?;
        let pool = pool_config(config);
        let open = |service: Service| {
            let pool = pool.clone();
            async move {
                Ok::<_, StartError>(Database::open(service, &database_url(config, service), &pool).await?)
            }
        };
        Ok(Self {
            auth: open(Service::Auth).await?,
            product: open(Service::Product).await?,
            cart: open(Service::Cart).await?,
            payment: open(Service::Payment).await?,
            order: open(Service::Order).await?,
        })
    }

    async fn close(&self) {
        for db in [&self.auth, &self.product, &self.cart, &self.payment, &self.order] {
            db.close().await;
        }
    }

    /// Checks the cross-database invariants (see `shop_services::audit`).
    pub async fn audit(&self) -> Result<AuditReport, ServiceError> {
        shop_services::audit::audit(
            &*self.product.products(),
            &*self.payment.payments(),
            &*self.order.orders(),
        )
        .await
    }
}

pub(crate) fn ensure_data_dir(config: &RunConfig) -> Result<(), StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartError::Config(format!("cannot create data dir {}: {e}", config.data_dir.display())))
}

/// The service's database URL: as configured, or SQLite under the data dir.
pub(crate) fn database_url(config: &RunConfig, service: Service) -> String {
    config
        .database_url(service)
        .map_or_else(|| crate::config::sqlite_url_in(&config.data_dir, service), str::to_owned)
}

pub(crate) async fn auth_service(
    config: &RunConfig,
    db: &Database,
    keys: &JwtKeys,
) -> Result<AuthService, StartError> {
    let auth_config = AuthConfig {
        bcrypt_cost: config.bcrypt_cost,
        hash_concurrency: config.hash_concurrency,
        hash_queue: config.hash_queue,
        hash_cpu_share: config.hash_cpu_share,
    };
    let auth = AuthService::new(db.users(), keys.clone(), &auth_config).await?;
    if let Some(password) = &config.admin_password {
        auth.ensure_admin(password.expose()).await?;
    }
    Ok(auth)
}

pub(crate) async fn product_service(db: &Database) -> Result<ProductService, StartError> {
    let products = ProductService::new(db.products());
    let seeded = products.seed_if_empty().await?;
    if seeded > 0 {
        tracing::info!(products = seeded, "seeded an empty catalog");
    }
    Ok(products)
}

pub(crate) fn payment_service(config: &RunConfig, db: &Database) -> Result<PaymentService, StartError> {
    let gateway = MockGateway::new(&GatewayConfig {
        success_rate: config.payment_success_rate,
        seed: config.payment_seed,
        latency: Duration::from_millis(config.payment_latency_ms),
    })?;
    Ok(PaymentService::new(db.payments(), gateway))
}

pub(crate) fn core_config(config: &RunConfig) -> CoreConfig {
    let mut core = CoreConfig::default();
    if let Some(n) = config.arbiters {
        core.arbiters = n;
    }
    for registry in [&mut core.carts.registry, &mut core.orders] {
        registry.idle_timeout = config.idle_timeout();
        registry.request_timeout = config.request_timeout();
    }
    core.payments = PaymentPoolConfig {
        workers: config.payment_workers,
        queue_per_worker: config.payment_queue,
        ..PaymentPoolConfig::default()
    };
    core
}

pub(crate) fn pool_config(config: &RunConfig) -> PoolConfig {
    PoolConfig {
        read_connections: config.db_read_connections,
        max_connections: config.db_max_connections,
        acquire_timeout: Duration::from_millis(config.db_acquire_timeout_ms),
        ..PoolConfig::default()
    }
}

/// The running embedded system. Tests build it on port 0 with a fresh data dir.
pub struct Application {
    addrs: Vec<(Service, SocketAddr)>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    shutdown: watch::Sender<bool>,
    core: Core,
    databases: Databases,
    bus: Arc<InProcessBus>,
}

impl Application {
    /// Opens and migrates the databases, starts the actor core, binds the five listeners and
    /// starts serving. Returns once every service accepts connections.
    pub async fn build(config: RunConfig) -> Result<Self, StartError> {
        // Bind first: a taken port is the most common start-up failure and the cheapest to report.
        let mut listeners = Vec::new();
        for service in Service::ALL {
            let addr = SocketAddr::new(config.host, config.port(service));
            let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
                service: service.name(),
                addr,
                source,
            })?;
            listeners.push((service, listener));
        }

        let databases = Databases::open(&config).await?;
        let secret = match &config.jwt_secret {
            Some(s) => s.clone(),
            None => load_or_create_secret(&config.data_dir.join("jwt-secret"))?,
        };
        let keys = JwtKeys::new(&secret, Duration::from_secs(config.jwt_ttl_secs));
        let auth = auth_service(&config, &databases.auth, &keys).await?;
        let products = product_service(&databases.product).await?;
        let payments = payment_service(&config, &databases.payment)?;
        let core_config = core_config(&config);
        let bus = Arc::new(InProcessBus::new());
        let core = Core::start(
            core_config,
            databases.cart.carts(),
            databases.order.orders(),
            Arc::new(payments.clone()),
            bus.clone(),
        )?;
        // The Cart service's side of ORDER_EVENTS.
        bus.subscribe(Arc::new(core.carts.clone()));

        let carts = CartService::new(core.carts.clone(), Arc::new(products.clone()));
        let orders = OrderService::new(core.orders.clone(), core.checkouts.clone());
        let (shutdown, _) = watch::channel(false);
        let mut addrs = Vec::new();
        let mut servers = Vec::new();
        for (service, listener) in listeners {
            let router = match service {
                Service::Auth => {
                    routes::auth::router(routes::auth::AuthState { auth: auth.clone(), keys: keys.clone() })
                }
                Service::Product => routes::product::router(routes::product::ProductState {
                    products: products.clone(),
                    keys: keys.clone(),
                }),
                Service::Cart => {
                    routes::cart::router(routes::cart::CartState { carts: carts.clone(), keys: keys.clone() })
                }
                Service::Payment => routes::payment::router(routes::payment::PaymentState {
                    payments: payments.clone(),
                    keys: keys.clone(),
                }),
                Service::Order => routes::order::router(routes::order::OrderState {
                    orders: orders.clone(),
                    keys: keys.clone(),
                }),
            };
            addrs.push((service, listener.local_addr()?));
            let mut stop = shutdown.subscribe();
            servers.push(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    })
                    .await
            }));
        }
        Ok(Self { addrs, servers, shutdown, core, databases, bus })
    }

    pub fn addr(&self, service: Service) -> SocketAddr {
        self.addrs.iter().find(|(s, _)| *s == service).map(|(_, a)| *a).unwrap_or_else(|| {
            // Every service is bound in `build`; this cannot be reached.
            SocketAddr::from(([0, 0, 0, 0], 0))
        })
    }

    pub fn addrs(&self) -> &[(Service, SocketAddr)] {
        &self.addrs
    }

    /// The in-process event bus (subscribe to see ORDER_EVENTS).
    pub fn bus(&self) -> &Arc<InProcessBus> {
        &self.bus
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    pub fn databases(&self) -> &Databases {
        &self.databases
    }

    /// Serves until `signal` resolves (or a server fails), then stops gracefully.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let servers = std::mem::take(&mut self.servers);
        let first_exit = futures_first(servers);
        let result = tokio::select! {
            () = signal => Ok(()),
            r = first_exit => r,
        };
        self.stop().await;
        result
    }

    /// Stops accepting requests, lets in-flight ones finish, stops the actors and closes the
    /// databases.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for server in std::mem::take(&mut self.servers) {
            let _ = server.await;
        }
        let runtime = self.core.runtime.clone();
        let _ = tokio::task::spawn_blocking(move || runtime.shutdown()).await;
        self.databases.close().await;
    }
}

/// Resolves when the first server task ends, with its error if it failed.
async fn futures_first(servers: Vec<JoinHandle<std::io::Result<()>>>) -> std::io::Result<()> {
    if servers.is_empty() {
        return std::future::pending().await;
    }
    let (done, _, _) = futures::future::select_all(servers).await;
    match done {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}
