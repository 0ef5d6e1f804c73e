//! Distributed mode (`shop serve <service>`): one service per process, REST between services,
//! events through Kafka.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shop_actors::runtime::ActorRuntime;
use shop_actors::{CartSide, OrderPorts, OrderSide, Outbox, SagaConfig};
use shop_services::Service;
use shop_services::auth::{JwtKeys, check_secret_strength};
use shop_services::cart::CartService;
use shop_services::history::HistorySource;
use shop_services::kafka::{BrokerProbe, KafkaBus, KafkaConfig};
use shop_services::order::OrderService;
use shop_services::storage::Database;

use crate::clients::{
    ClientConfig, HttpCartPort, HttpCatalog, HttpHistory, HttpPaymentGateway, HttpStockPort, ServiceClient,
};
use crate::config::ServeConfig;
use crate::frontends::{self, Check, Frontend, Servers, StartError};
use crate::gateway::{Gateway, Upstream};

/// One running service.
pub struct Node {
    service: Service,
    servers: Servers,
    runtime: Option<Arc<ActorRuntime>>,
    database: Database,
    /// Cart and Order: the Kafka bridge, closed on the way out.
    bus: Option<KafkaBus>,
    /// Order: the outbox, flushed on the way out.
    outbox: Option<Outbox>,
    grace: Duration,
}

/// The gateway, in distributed mode: no database, the services reached at their URLs.
pub struct GatewayNode {
    servers: Servers,
    grace: Duration,
}

impl GatewayNode {
    /// Binds `SHOP_GATEWAY_PORT` and forwards to `SHOP_AUTH_URL`, `SHOP_PRODUCT_URL`,
    /// `SHOP_CART_URL` and `SHOP_ORDER_URL` (each required).
    pub async fn start(config: &ServeConfig) -> Result<Self, StartError> {
        let url = |value: &Option<String>, var: &str| {
            value.as_deref().map(|u| u.trim_end_matches('/').to_owned()).filter(|u| !u.is_empty()).ok_or_else(
                || StartError::Config(format!("the gateway needs {var} (where that service answers)")),
            )
        };
        let upstreams = vec![
            (Service::Auth, Upstream::Remote(url(&config.auth_url, "SHOP_AUTH_URL")?)),
            (Service::Product, Upstream::Remote(url(&config.product_url, "SHOP_PRODUCT_URL")?)),
            (Service::Cart, Upstream::Remote(url(&config.cart_url, "SHOP_CART_URL")?)),
            (Service::Order, Upstream::Remote(url(&config.order_url, "SHOP_ORDER_URL")?)),
        ];
        let run = &config.run;
        let gateway = Gateway::new(upstreams, Duration::from_millis(run.gateway_timeout_ms))
            .map_err(|e| StartError::Config(format!("the gateway's HTTP client: {e}")))?;
        let listener = frontends::bind_gateway(run.host, run.gateway_port).await?;
        let mut servers = Servers::new();
        servers.serve(None, listener, gateway.router())?;
        Ok(Self { servers, grace: run.shutdown_grace() })
    }

    pub fn addr(&self) -> SocketAddr {
        self.servers.gateway_addr().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `signal` resolves (or the server fails), then stops gracefully.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let result = self.servers.run_until(signal).await;
        self.servers.stop(self.grace).await;
        result
    }
}

/// How long a stopping node waits for the outbox's events, and then the producer's, to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

impl Node {
    /// Opens the service's database, connects what it needs and starts serving its port.
    pub async fn start(config: ServeConfig) -> Result<Self, StartError> {
        let service = config.service.service().ok_or_else(|| {
            StartError::Config("`shop serve gateway` runs the gateway, not a service".into())
        })?;
        let run = &config.run;
        let secret = run.jwt_secret.clone().ok_or_else(|| {
            StartError::Config(
                "distributed mode needs SHOP_JWT_SECRET (the same secret in every service)".into(),
            )
        })?;
        check_secret_strength(&secret)?;
        let keys = JwtKeys::new(&secret, Duration::from_secs(run.jwt_ttl_secs))?;
        let listener = frontends::bind(run.host, service, run.port(service)).await?;
        let database = frontends::open_database(run, service).await?;
        let peers = Peers { config: &config, keys: &keys, service };

        let mut runtime = None;
        let (mut bus, mut outbox) = (None, None);
        let mut sweep = None;
        let mut checks = vec![Check::database(&database)];
        let mut figures = vec![frontends::database_figures(&database)];
        let frontend = match service {
            Service::Auth => Frontend::Auth(
                Box::new(frontends::auth(run, &database, &keys).await?),
                frontends::trusted_proxies(run),
            ),
            Service::Product => {
                let products = frontends::product(run, &database).await?;
                sweep = Some(products.clone().sweep_forever());
                // With stock following events, checkouts' outcomes end their reservations (the
                // saga does not ask for it). The broker is not part of readiness here: while it
                // is away the catalog and new reservations go on, and the outcomes wait in the
                // order outbox.
                if config.stock_follows_events {
                    let rt = Arc::new(ActorRuntime::start(1)?);
                    let group = config
                        .kafka_stock_group
                        .clone()
                        .unwrap_or_else(|| format!("{}-stock", config.kafka_group));
                    let handler = Arc::new(products.clone());
                    let consumer = KafkaBus::start(&rt, peers.kafka()?, Some((group.as_str(), handler)))
                        .await
                        .map_err(kafka_error)?;
                    figures.extend(consumer.consumer_lag().map(frontends::consumer_figures));
                    bus = Some(consumer);
                    runtime = Some(rt);
                }
                Frontend::Product(products)
            }
            Service::Payment => Frontend::Payment(frontends::payment(run, &database)?),
            Service::Cart => {
                let catalog = shop_services::cart::CachedCatalog::new(
                    HttpCatalog(peers.client(&config.product_url, "SHOP_PRODUCT_URL", Service::Product)?),
                    Duration::from_millis(config.catalog_ttl_ms),
                );
                let core = frontends::core_config(run);
                let rt = Arc::new(ActorRuntime::start(core.arbiters)?);
                let cart = CartSide::start(rt.clone(), database.carts(), core.carts);
                checks.push(peers.broker()?);
                checks.push(peers.check("product", &config.product_url, "SHOP_PRODUCT_URL")?);
                let group = config.kafka_group.as_str();
                let consumer = KafkaBus::start(&rt, peers.kafka()?, Some((group, cart.handler())))
                    .await
                    .map_err(kafka_error)?;
                figures.extend(consumer.consumer_lag().map(frontends::consumer_figures));
                bus = Some(consumer);
                runtime = Some(rt);
                Frontend::Cart(CartService::new(cart.carts, Arc::new(catalog), database.carts()))
            }
            Service::Order => {
                checks.push(peers.broker()?);
                checks.push(peers.check("cart", &config.cart_url, "SHOP_CART_URL")?);
                checks.push(peers.check("product", &config.product_url, "SHOP_PRODUCT_URL")?);
                checks.push(peers.check("payment", &config.payment_url, "SHOP_PAYMENT_URL")?);
                let core = frontends::core_config(run);
                let rt = Arc::new(ActorRuntime::start(core.arbiters)?);
                let producer = KafkaBus::start(&rt, peers.kafka()?, None).await.map_err(kafka_error)?;
                let ports = OrderPorts {
                    carts: Arc::new(HttpCartPort(peers.client(
                        &config.cart_url,
                        "SHOP_CART_URL",
                        Service::Cart,
                    )?)),
                    stock: Arc::new(HttpStockPort(peers.client(
                        &config.product_url,
                        "SHOP_PRODUCT_URL",
                        Service::Product,
                    )?)),
                    store: database.orders(),
                    gateway: Arc::new(HttpPaymentGateway(peers.payment_client(&config.payment_url)?)),
                    bus: Arc::new(producer.clone()),
                };
                // Events leave through the outbox; a checkout only kicks the relay, so it answers
                // while the broker is away and the events follow when it is back.
                let mut order = core.order;
                // With `stock_follows_events` the Product service ends each reservation from the
                // outcome's event; otherwise the saga asks it.
                let stock_follows_events = config.stock_follows_events;
                order.saga = SagaConfig { await_events: false, stock_follows_events, ..order.saga };
                let side = OrderSide::start(&rt, ports, order);
                runtime = Some(rt);
                (bus, outbox) = (Some(producer), Some(side.outbox.clone()));
                let history = |peer: Service,
                               url: &Option<String>,
                               var|
                 -> Result<Arc<dyn HistorySource>, StartError> {
                    Ok(Arc::new(HttpHistory { client: peers.client(url, var, peer)?, name: peer.name() }))
                };
                let history = vec![
                    history(Service::Product, &config.product_url, "SHOP_PRODUCT_URL")?,
                    history(Service::Payment, &config.payment_url, "SHOP_PAYMENT_URL")?,
                    history(Service::Cart, &config.cart_url, "SHOP_CART_URL")?,
                ];
                Frontend::Order(OrderService::new(&side, database.orders(), history))
            }
        };
        let mut servers = Servers::new();
        if let Some(sweep) = sweep {
            servers.background(sweep);
        }
        // The router is for an in-process gateway, which a node has not.
        let _router = servers.spawn(service, listener, frontend, &keys, checks, figures)?;
        Ok(Self { service, servers, runtime, database, bus, outbox, grace: run.shutdown_grace() })
    }

    pub fn addr(&self) -> SocketAddr {
        self.servers.addrs().first().map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |(_, a)| *a)
    }

    pub fn service(&self) -> Service {
        self.service
    }

    /// Serves until `signal` resolves (or the server fails), then stops gracefully.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let result = self.servers.run_until(signal).await;
        // No new requests; the in-flight ones finish (within the grace).
        self.servers.stop(self.grace).await;
        // The outbox's unsent events go out, the producer's last records are acknowledged and
        // the consumer's offsets committed; whatever cannot be done now is done after a restart
        // (the outbox keeps the events, the group re-reads from its last commit).
        if let Some(outbox) = &self.outbox
            && let Err(e) = outbox.flush(FLUSH_TIMEOUT).await
        {
            tracing::warn!(error = %e, "events left in the outbox; they go out at the next start");
        }
        if let Some(bus) = &self.bus {
            match bus.close(FLUSH_TIMEOUT).await {
                Ok(()) => tracing::info!("Kafka producer flushed and consumer offsets committed"),
                Err(e) => tracing::warn!(error = %e, "could not close the Kafka bridge cleanly"),
            }
        }
        if let Some(runtime) = self.runtime.take() {
            let _ = tokio::task::spawn_blocking(move || runtime.shutdown()).await;
        }
        self.database.close().await;
        result
    }
}

/// How this process reaches the other services and the broker.
struct Peers<'a> {
    config: &'a ServeConfig,
    keys: &'a JwtKeys,
    service: Service,
}

impl Peers<'_> {
    fn required<'v>(&self, value: &'v Option<String>, name: &str) -> Result<&'v str, StartError> {
        value
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| StartError::Config(format!("the {} service needs {name}", self.service.name())))
    }

    /// A client of the peer `callee` at `url` (set by `name`), calling as this node's service.
    fn client(&self, url: &Option<String>, name: &str, callee: Service) -> Result<ServiceClient, StartError> {
        let url = self.required(url, name)?;
        ServiceClient::new(url, self.service, callee, self.keys.clone(), ClientConfig::default())
            .map_err(StartError::Config)
    }

    /// The Payment client: a short timeout per call (`SHOP_PAYMENT_TIMEOUT_MS`), so that a
    /// Payment that does not answer is noticed (and the breaker opens) within seconds.
    fn payment_client(&self, url: &Option<String>) -> Result<ServiceClient, StartError> {
        let timeout = self.config.run.payment_timeout();
        let config = ClientConfig {
            request_timeout: timeout,
            connect_timeout: timeout.min(ClientConfig::default().connect_timeout),
            attempts: 1,
            ..ClientConfig::default()
        };
        ServiceClient::new(
            self.required(url, "SHOP_PAYMENT_URL")?,
            self.service,
            Service::Payment,
            self.keys.clone(),
            config,
        )
        .map_err(StartError::Config)
    }

    /// `/ready`'s check of the peer at `url` (set by `name`).
    fn check(&self, peer: &'static str, url: &Option<String>, name: &str) -> Result<Check, StartError> {
        Check::peer(peer, self.required(url, name)?).map_err(StartError::Config)
    }

    /// `/ready`'s check of the broker.
    fn broker(&self) -> Result<Check, StartError> {
        Ok(Check::broker(BrokerProbe::new(&self.kafka()?).map_err(kafka_error)?))
    }

    fn kafka(&self) -> Result<KafkaConfig, StartError> {
        let brokers = self.required(&self.config.kafka_brokers, "SHOP_KAFKA_BROKERS")?;
        Ok(KafkaConfig {
            partitions: self.config.kafka_partitions,
            send_timeout: Duration::from_millis(self.config.kafka_send_timeout_ms),
            fetch_wait: Duration::from_millis(self.config.kafka_fetch_wait_ms),
            ..KafkaConfig::new(brokers)
        })
    }
}

fn kafka_error(e: shop_actors::ports::BusError) -> StartError {
    StartError::Config(format!("kafka: {e}"))
}
