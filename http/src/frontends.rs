//! Each service's frontend and its server, built in one place for both modes: `shop run`
//! ([`crate::app`]) builds all five in one process, `shop serve` ([`crate::serve`]) one.
//!
//! What differs between the modes is only what a service is handed: in one process the Cart
//! service looks products up in the Product service itself and the Order side leases carts from
//! the Cart side; apart, both go through the HTTP clients in [`crate::clients`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use shop_actors::{BreakerConfig, CoreConfig, PaymentPoolConfig, RecoveryConfig, RegistryStats, SagaConfig};
use shop_services::auth::limits::{Limit, LoginLimits};
use shop_services::auth::{AuthConfig, AuthService, JwtKeys};
use shop_services::cart::CartService;
use shop_services::kafka::ConsumerLag;
use shop_services::order::{OrderFigures, OrderService};
use shop_services::payment::{GatewayConfig, MockGateway, PaymentService};
use shop_services::product::{ProductService, StockConfig};
use shop_services::storage::{Database, PoolConfig};
use shop_services::{Service, ServiceError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::RunConfig;
use crate::limits::TrustedProxies;
use crate::metrics::{self, Figure, Kind, Metrics, Sample, Source};
pub(crate) use crate::ops::Check;
use crate::ops::Ops;
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

/// One service, ready to serve.
pub(crate) enum Frontend {
    // Boxed: the auth service (with its JWT keys) is far larger than the others.
    Auth(Box<AuthService>, TrustedProxies),
    Product(ProductService),
    Cart(CartService),
    Payment(PaymentService),
    Order(OrderService),
}

impl Frontend {
    /// The service's router: its routes, `/health`, `/ready` (answered by `checks`), `/metrics`,
    /// problem+json for everything else.
    /// `figures` are read for `/metrics` besides the service's own (its database's, say).
    pub(crate) fn router(
        self,
        service: Service,
        keys: JwtKeys,
        checks: Vec<Check>,
        figures: Vec<Source>,
    ) -> Router {
        let figures = self.figures().into_iter().chain(figures).collect();
        let keys = keys.for_service(service);
        let ops = Ops { metrics: Metrics::new(service.name(), figures), checks: Arc::new(checks) };
        match self {
            Frontend::Auth(auth, trusted) => {
                routes::auth::router(routes::auth::AuthState { auth: *auth, keys, trusted }, ops)
            }
            Frontend::Product(products) => {
                routes::product::router(routes::product::ProductState { products, keys }, ops)
            }
            Frontend::Cart(carts) => routes::cart::router(routes::cart::CartState { carts, keys }, ops),
            Frontend::Payment(payments) => {
                routes::payment::router(routes::payment::PaymentState { payments, keys }, ops)
            }
            Frontend::Order(orders) => routes::order::router(routes::order::OrderState { orders, keys }, ops),
        }
    }

    /// What the service's `/metrics` shows besides its requests, read when scraped.
    fn figures(&self) -> Vec<Source> {
        match self {
            Frontend::Auth(auth, _) => {
                let auth = (**auth).clone();
                vec![metrics::source(move || {
                    let (waiting, refused) = auth.hashing_queue();
                    vec![
                        Figure::gauge(
                            "login_hashing_waiting",
                            "Logins and registrations queued or being hashed",
                            waiting as f64,
                        ),
                        Figure::counter(
                            "login_hashing_refused",
                            "Logins and registrations refused: the hashing queue was full",
                            refused as f64,
                        ),
                    ]
                })]
            }
            Frontend::Cart(carts) => {
                let carts = carts.clone();
                vec![metrics::source(move || {
                    let mut figures = actor_figures("cart", carts.actor_stats());
                    figures.push(Figure::histogram(
                        "order_event_latency_seconds",
                        "How long order outcomes took to reach the carts, from the event's writing in the order store to the cart changed by it",
                        carts.event_latency(),
                    ));
                    figures
                })]
            }
            Frontend::Order(orders) => {
                let (counters, backlog) = (orders.clone(), orders.clone());
                vec![
                    metrics::source(move || order_figures(counters.figures())),
                    Arc::new(move || {
                        let orders = backlog.clone();
                        Box::pin(async move { outbox_figures(orders.outbox_backlog().await) })
                    }),
                ]
            }
            Frontend::Product(_) | Frontend::Payment(_) => Vec::new(),
        }
    }
}

/// How busy the service's database connections are.
pub(crate) fn database_figures(db: &Database) -> Source {
    let db = db.clone();
    metrics::source(move || {
        let figure = |name, help, kind| Figure { name, help, kind, values: Vec::new() };
        let (mut in_use, mut waiting, mut waits, mut waited, mut work, mut commits) = (
            figure("db_connections_in_use", "Database connections running a piece of work", Kind::Gauge),
            figure("db_waiting", "Pieces of work waiting for a database connection", Kind::Gauge),
            figure("db_waits", "Pieces of work that found every database connection busy", Kind::Counter),
            figure("db_wait_seconds", "Time pieces of work waited for a database connection", Kind::Counter),
            figure(
                "db_work",
                "Pieces of work run on the database (on the SQLite writer, one write transaction each)",
                Kind::Counter,
            ),
            figure(
                "db_commits",
                "Commits of the SQLite writer, each holding one or more pieces of work",
                Kind::Counter,
            ),
        );
        for s in db.pool_stats() {
            let lane = vec![("lane", s.lane)];
            in_use.values.push((lane.clone(), Sample::Value(s.in_use as f64)));
            waiting.values.push((lane.clone(), Sample::Value(s.waiting as f64)));
            waits.values.push((lane.clone(), Sample::Value(s.waits as f64)));
            work.values.push((lane.clone(), Sample::Value(s.work as f64)));
            if let Some(n) = s.commits {
                commits.values.push((lane.clone(), Sample::Value(n as f64)));
            }
            waited.values.push((lane, Sample::Value(s.wait_seconds)));
        }
        // Commits are counted only where work is grouped under them (the SQLite writer).
        [in_use, waiting, waits, waited, work, commits].into_iter().filter(|f| !f.values.is_empty()).collect()
    })
}

/// How far the Cart consumer is behind `ORDER_EVENTS` (distributed mode).
pub(crate) fn consumer_figures(lag: ConsumerLag) -> Source {
    metrics::source(move || {
        lag.records()
            .map(|n| {
                Figure::gauge(
                    "kafka_consumer_lag",
                    "Records on ORDER_EVENTS this service's consumer has not handled yet",
                    n as f64,
                )
            })
            .into_iter()
            .collect()
    })
}

/// Live and passivated entity actors of one kind.
fn actor_figures(kind: &'static str, stats: RegistryStats) -> Vec<Figure> {
    let label = vec![("kind", kind)];
    vec![
        Figure::by("actors_live", "Entity actors in memory", Kind::Gauge, label.clone(), stats.live as f64),
        Figure::by(
            "actors_activated",
            "Entity actors started (from storage)",
            Kind::Counter,
            label.clone(),
            stats.activations as f64,
        ),
        Figure::by(
            "actors_passivated",
            "Entity actors stopped after idling",
            Kind::Counter,
            label,
            stats.passivations as f64,
        ),
    ]
}

fn order_figures(f: OrderFigures) -> Vec<Figure> {
    let c = f.checkouts;
    let outcomes = [
        ("paid", c.paid),
        ("cancelled", c.cancelled),
        ("refused", c.refused),
        ("failed", c.failed),
        ("replayed", c.replayed),
        ("recovered", f.recovery.recovered),
        ("refunded", f.recovery.refunded),
    ];
    let checkouts = Figure {
        name: "checkouts",
        help: "Checkouts by how they ended: paid, cancelled, refused (no order made), failed (left to recovery), replayed (idempotency key), recovered and refunded (by recovery)",
        kind: Kind::Counter,
        values: outcomes
            .iter()
            .map(|(outcome, n)| (vec![("outcome", *outcome)], Sample::Value(*n as f64)))
            .collect(),
    };
    let mut figures = vec![checkouts];
    figures.extend([
        Figure::histogram(
            "checkout_duration_seconds",
            "How long checkouts that made an order (PAID or CANCELLED) took, request to answer",
            f.checkout_durations,
        ),
        Figure::histogram(
            "outbox_relay_lag_seconds",
            "How long events waited in the outbox, from written to published",
            f.relay_lag,
        ),
        Figure::gauge(
            "payment_pool_in_flight",
            "Charges being made by the payment workers",
            f.payments_in_flight as f64,
        ),
        Figure::gauge(
            "payment_pool_queued",
            "Checkouts waiting for a payment worker",
            f.payments_queued as f64,
        ),
    ]);
    figures.extend(actor_figures("order", f.actors));
    figures
}

/// The outbox's unsent events, from the order database; nothing when it cannot be read (the
/// scrape goes on, and `/ready` says why).
fn outbox_figures(
    backlog: Result<(u64, Option<chrono::DateTime<chrono::Utc>>), ServiceError>,
) -> Vec<Figure> {
    let Ok((unsent, oldest)) = backlog else { return Vec::new() };
    let age = oldest.map_or(0.0, |t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
    vec![
        Figure::gauge("outbox_backlog", "Events in the outbox not yet published", unsent as f64),
        Figure::gauge(
            "outbox_oldest_unsent_seconds",
            "Age of the oldest unpublished event (0 when none)",
            age,
        ),
    ]
}

/// The Auth service, with user `admin` made when `SHOP_ADMIN_PASSWORD` is set.
pub(crate) async fn auth(
    config: &RunConfig,
    db: &Database,
    keys: &JwtKeys,
) -> Result<AuthService, StartError> {
    let auth_config = AuthConfig {
        bcrypt_cost: config.bcrypt_cost,
        hash_concurrency: config.hash_concurrency,
        hash_queue: config.hash_queue,
        hash_cpu_share: config.hash_cpu_share,
        limits: LoginLimits {
            account: Limit::new(config.login_account_failures, Duration::from_secs(config.login_window_secs)),
            address: Limit::new(config.login_address_failures, Duration::from_secs(config.login_window_secs)),
            register: Limit::new(
                config.register_per_address,
                Duration::from_secs(config.register_window_secs),
            ),
        },
    };
    if config.bcrypt_cost < 10 {
        tracing::warn!(cost = config.bcrypt_cost, "SHOP_BCRYPT_COST is below 10: fit for tests only");
    }
    let auth = AuthService::new(db.users(), keys.clone(), &auth_config).await?;
    if let Some(password) = &config.admin_password {
        auth.ensure_admin(password.expose()).await?;
    }
    Ok(auth)
}

/// The Product service, its catalog seeded when empty.
pub(crate) async fn product(config: &RunConfig, db: &Database) -> Result<ProductService, StartError> {
    let stock = StockConfig {
        reservation_ttl: Duration::from_secs(config.reservation_ttl_secs),
        sweep_interval: Duration::from_millis(config.reservation_sweep_ms.max(1)),
    };
    let products = ProductService::new(db.products(), stock);
    let seeded = products.seed_if_empty().await?;
    if seeded > 0 {
        tracing::info!(products = seeded, "seeded an empty catalog");
    }
    Ok(products)
}

/// The Payment service and its mock gateway.
pub(crate) fn payment(config: &RunConfig, db: &Database) -> Result<PaymentService, StartError> {
    let gateway = MockGateway::new(&GatewayConfig {
        success_rate: config.payment_success_rate,
        seed: config.payment_seed,
        latency: Duration::from_millis(config.payment_latency_ms),
    })?;
    Ok(PaymentService::new(db.payments(), gateway))
}

/// Opens (creating and migrating) the service's database where the configuration says.
pub(crate) async fn open_database(config: &RunConfig, service: Service) -> Result<Database, StartError> {
    config.storage.ensure_data_dir(&[service]).map_err(StartError::Config)?;
    let pool = PoolConfig {
        read_connections: config.db_read_connections,
        group_commit: config.db_group_commit as usize,
        max_connections: config.db_max_connections,
        acquire_timeout: Duration::from_millis(config.db_acquire_timeout_ms),
        ..PoolConfig::default()
    };
    Ok(Database::open(service, &config.storage.database_url(service), &pool).await?)
}

/// The actor core's settings from the command line.
pub(crate) fn core_config(config: &RunConfig) -> CoreConfig {
    let mut core = CoreConfig::default();
    if let Some(n) = config.arbiters {
        core.arbiters = n;
    }
    for registry in [&mut core.carts.registry, &mut core.order.orders] {
        registry.idle_timeout = config.idle_timeout();
        registry.request_timeout = config.request_timeout();
    }
    core.order.payments = PaymentPoolConfig {
        workers: config.payment_workers,
        queue_per_worker: config.payment_queue,
        call_timeout: config.payment_timeout(),
        ..PaymentPoolConfig::default()
    };
    core.order.saga = SagaConfig {
        deadline: Duration::from_millis(config.checkout_deadline_ms),
        breaker: BreakerConfig {
            failures: config.breaker_failures,
            open_for: Duration::from_millis(config.breaker_open_ms),
        },
        ..SagaConfig::default()
    };
    core.order.recovery = RecoveryConfig {
        threshold: Duration::from_millis(config.recovery_threshold_ms),
        interval: Duration::from_millis(config.recovery_interval_ms.max(1)),
        ..RecoveryConfig::default()
    };
    core
}

/// Binds the service's port: done before anything else starts, since a taken port is the most
/// common start-up failure and the cheapest to report.
pub(crate) async fn bind(host: IpAddr, service: Service, port: u16) -> Result<TcpListener, StartError> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { service: service.name(), addr, source })
}

/// The proxies whose `X-Forwarded-For` the Auth service believes.
pub(crate) fn trusted_proxies(config: &RunConfig) -> TrustedProxies {
    TrustedProxies(config.trusted_proxies.clone().into())
}

/// The gateway's listener.
pub(crate) async fn bind_gateway(host: IpAddr, port: u16) -> Result<TcpListener, StartError> {
    let addr = SocketAddr::new(host, port);
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { service: "gateway", addr, source })
}

/// The HTTP servers of this process, stopped together.
pub(crate) struct Servers {
    /// Each server, by the service it serves (`None`: the gateway).
    running: Vec<(Option<Service>, SocketAddr, JoinHandle<std::io::Result<()>>)>,
    /// Background work of the services (the stock sweep), stopped with them.
    tasks: Vec<JoinHandle<()>>,
    /// Set once to stop them all: each stops accepting and lets in-flight requests finish.
    shutdown: watch::Sender<bool>,
}

impl Servers {
    pub(crate) fn new() -> Self {
        Self { running: Vec::new(), tasks: Vec::new(), shutdown: watch::channel(false).0 }
    }

    /// Runs `task` until [`Servers::stop`].
    pub(crate) fn background(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Serves `frontend` on `listener` until [`Servers::stop`]; answers its router, which the
    /// gateway of embedded mode routes to in-process.
    pub(crate) fn spawn(
        &mut self,
        service: Service,
        listener: TcpListener,
        frontend: Frontend,
        keys: &JwtKeys,
        checks: Vec<Check>,
        figures: Vec<Source>,
    ) -> std::io::Result<Router> {
        let router = frontend.router(service, keys.clone(), checks, figures);
        self.serve(Some(service), listener, router.clone())?;
        Ok(router)
    }

    /// Serves `router` on `listener` until [`Servers::stop`]; `service` is `None` for the gateway.
    pub(crate) fn serve(
        &mut self,
        service: Option<Service>,
        listener: TcpListener,
        router: Router,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        let mut stop = self.shutdown.subscribe();
        let server = tokio::spawn(async move {
            // With the peer's address, which the login and registration limits count by.
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        });
        self.running.push((service, addr, server));
        Ok(())
    }

    pub(crate) fn addrs(&self) -> Vec<(Service, SocketAddr)> {
        self.running.iter().filter_map(|(s, a, _)| Some(((*s)?, *a))).collect()
    }

    /// Where the gateway listens, if this process runs it.
    pub(crate) fn gateway_addr(&self) -> Option<SocketAddr> {
        self.running.iter().find(|(s, _, _)| s.is_none()).map(|(_, a, _)| *a)
    }

    /// Serves until `signal` resolves or a server fails (answering its error); the caller stops
    /// them then ([`Servers::stop`]), before what they serve.
    pub(crate) async fn run_until(&mut self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let first_exit = async {
            if self.running.is_empty() {
                return std::future::pending().await;
            }
            let servers = self.running.iter_mut().map(|(_, _, server)| server);
            let (done, _, _) = futures::future::select_all(servers).await;
            done.unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        tokio::select! {
            () = signal => Ok(()),
            r = first_exit => r,
        }
    }

    /// Stops accepting requests and waits, at most `grace` in all, for the in-flight ones to
    /// finish; a server still answering then is stopped with its requests (a checkout among them
    /// is ended by recovery).
    pub(crate) async fn stop(&mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for (service, _, mut server) in self.running.drain(..) {
            // One that already ended was awaited by `run_until`; a handle is awaited once.
            if server.is_finished() {
                continue;
            }
            if tokio::time::timeout_at(deadline, &mut server).await.is_err() {
                tracing::warn!(
                    service = service.map_or("gateway", Service::name),
                    ?grace,
                    "requests still in flight after the shutdown grace; stopping them (recovery ends their checkouts)"
                );
                server.abort();
            }
        }
    }
}
