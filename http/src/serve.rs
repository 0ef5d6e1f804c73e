//! Distributed mode: one service per process (`shop serve <service>`), REST between services,
//! events through Kafka.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use shop_actors::outbox::Outbox;
use shop_actors::payment_pool::PaymentPool;
use shop_actors::ports::{CartPort, EventBus, EventHandler, OrderStore, PaymentGateway};
use shop_actors::runtime::ActorRuntime;
use shop_actors::saga::{Checkouts, SagaConfig};
use shop_actors::{Carts, Orders};
use shop_services::auth::JwtKeys;
use shop_services::cart::CartService;
use shop_services::db::{Database, Service};
use shop_services::kafka::{KafkaBus, KafkaConfig};
use shop_services::order::OrderService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{
    StartError, auth_service, core_config, database_url, ensure_data_dir, payment_service, pool_config,
    product_service,
};
use crate::clients::{ClientConfig, HttpCartPort, HttpCatalog, HttpPaymentGateway, ServiceClient};
use crate::config::ServeConfig;
use crate::routes;

fn required<'a>(value: &'a Option<String>, name: &str, service: Service) -> Result<&'a str, StartError> {
    value
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| StartError::Config(format!("the {} service needs {name}", service.name())))
}

/// One running service.
pub struct Node {
    service: Service,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: watch::Sender<bool>,
    runtime: Option<Arc<ActorRuntime>>,
    database: Database,
}

impl Node {
    /// Opens the service's database, connects what it needs and starts serving its port.
    pub async fn start(config: ServeConfig) -> Result<Self, StartError> {
        let service = Service::from(config.service);
        let run = &config.run;
        let secret = run.jwt_secret.clone().ok_or_else(|| {
            StartError::Config(
                "distributed mode needs SHOP_JWT_SECRET (the same secret in every service)".to_owned(),
            )
        })?;
        let keys = JwtKeys::new(&secret, Duration::from_secs(run.jwt_ttl_secs));
        let addr = SocketAddr::new(run.host, run.port(service));
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
            service: service.name(),
            addr,
            source,
        })?;
        if run.database_url(service).is_none() {
            ensure_data_dir(run)?;
        }
        let database = Database::open(service, &database_url(run, service), &pool_config(run)).await?;
        let client = |url: &str, peer: &'static str| {
            ServiceClient::new(url, peer, keys.clone(), ClientConfig::default()).map_err(StartError::Config)
        };
        let kafka = |config: &ServeConfig| -> Result<KafkaConfig, StartError> {
            let brokers = required(&config.kafka_brokers, "SHOP_KAFKA_BROKERS", service)?;
            Ok(KafkaConfig {
                partitions: config.kafka_partitions,
                send_timeout: Duration::from_millis(config.kafka_send_timeout_ms),
                ..KafkaConfig::new(brokers)
            })
        };
        let bus_err = |e: shop_actors::ports::BusError| StartError::Config(format!("kafka: {e}"));

        let mut runtime = None;
        let router: Router = match service {
            Service::Auth => {
                let auth = auth_service(run, &database, &keys).await?;
                routes::auth::router(routes::auth::AuthState { auth, keys: keys.clone() })
            }
            Service::Product => {
                let products = product_service(&database).await?;
                routes::product::router(routes::product::ProductState { products, keys: keys.clone() })
            }
            Service::Payment => {
                let payments = payment_service(run, &database)?;
                routes::payment::router(routes::payment::PaymentState { payments, keys: keys.clone() })
            }
            Service::Cart => {
                let catalog = HttpCatalog(client(
                    required(&config.product_url, "SHOP_PRODUCT_URL", service)?,
                    "cart-service",
                )?);
                let rt = Arc::new(ActorRuntime::start(core_config(run).arbiters)?);
                let cart_config = core_config(run).carts;
                let carts = Carts::new(rt.clone(), database.carts(), cart_config);
                let handler: Arc<dyn EventHandler> = Arc::new(carts.clone());
                KafkaBus::start(&rt, kafka(&config)?, Some((config.kafka_group.as_str(), handler)))
                    .await
                    .map_err(bus_err)?;
                runtime = Some(rt);
                let carts = CartService::new(carts, Arc::new(catalog));
                routes::cart::router(routes::cart::CartState { carts, keys: keys.clone() })
            }
            Service::Order => {
                let core = core_config(run);
                let rt = Arc::new(ActorRuntime::start(core.arbiters)?);
                let cart_port: Arc<dyn CartPort> = Arc::new(HttpCartPort(client(
                    required(&config.cart_url, "SHOP_CART_URL", service)?,
                    "order-service",
                )?));
                let gateway: Arc<dyn PaymentGateway> = Arc::new(HttpPaymentGateway(client(
                    required(&config.payment_url, "SHOP_PAYMENT_URL", service)?,
                    "order-service",
                )?));
                let bus: Arc<dyn EventBus> =
                    Arc::new(KafkaBus::start(&rt, kafka(&config)?, None).await.map_err(bus_err)?);
                let store: Arc<dyn OrderStore> = database.orders();
                let orders = Orders::new(rt.clone(), store.clone(), core.orders);
                let pool = PaymentPool::start(&rt, gateway, core.payments);
                // Events leave through the outbox; a checkout only kicks the relay, so it answers
                // while the broker is away and the events follow when it is back.
                let outbox = Outbox::start(&rt, store, bus, core.outbox);
                let saga = SagaConfig { await_events: false, ..core.saga };
                let checkouts = Checkouts::start(&rt, cart_port, orders.clone(), pool, outbox, saga);
                runtime = Some(rt);
                let orders = OrderService::new(orders, checkouts);
                routes::order::router(routes::order::OrderState { orders, keys: keys.clone() })
            }
        };

        let addr = listener.local_addr()?;
        let (shutdown, mut stop) = watch::channel(false);
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(Self { service, addr, server, shutdown, runtime, database })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn service(&self) -> Service {
        self.service
    }

    /// Serves until `signal` resolves (or the server fails), then stops gracefully.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let result = tokio::select! {
            () = signal => Ok(()),
            r = &mut self.server => r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        };
        let _ = self.shutdown.send(true);
        let _ = (&mut self.server).await;
        if let Some(runtime) = self.runtime.take() {
            let _ = tokio::task::spawn_blocking(move || runtime.shutdown()).await;
        }
        self.database.close().await;
        result
    }
}
