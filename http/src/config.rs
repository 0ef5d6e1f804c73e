//! The command line and its environment fallbacks: one typed struct per command.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shop_services::auth::Secret;
use shop_services::db::Service;

#[derive(Parser, Debug)]
#[command(name = "shop", version, about = "An actor-based e-commerce checkout system")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command, `shop` runs the embedded system (same as `shop run`).
    #[command(flatten)]
    pub run: RunConfig,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs all five services in one process: SQLite under the data dir, in-process events.
    Run(RunConfig),
    /// Runs one service in this process (distributed mode): REST to the other services, events
    /// through Kafka. Needs SHOP_JWT_SECRET.
    Serve(ServeConfig),
    /// Drives a running system (either mode) over HTTP: registers users, places checkouts at a
    /// concurrency or a fixed arrival rate, reports throughput and latency percentiles.
    Load(crate::load::LoadConfig),
    /// Checks the invariants across the service databases (orders against payments, nothing
    /// left PENDING, no negative stock); exits non-zero when one is broken.
    Audit(AuditConfig),
}

/// Where `shop audit` (and `shop load --audit`) finds the Product, Payment and Order databases:
/// the same settings the services use (SQLite under the data dir unless a URL is given).
#[derive(Args, Debug, Clone)]
pub struct AuditConfig {
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[arg(long, env = "SHOP_PRODUCT_DATABASE_URL", hide_env_values = true)]
    pub product_database_url: Option<String>,
    #[arg(long, env = "SHOP_PAYMENT_DATABASE_URL", hide_env_values = true)]
    pub payment_database_url: Option<String>,
    #[arg(long, env = "SHOP_ORDER_DATABASE_URL", hide_env_values = true)]
    pub order_database_url: Option<String>,
}

impl AuditConfig {
    /// The service's database URL: as configured, or its SQLite file under the data dir.
    pub fn database_url(&self, service: Service) -> String {
        let configured = match service {
            Service::Product => self.product_database_url.as_deref(),
            Service::Payment => self.payment_database_url.as_deref(),
            Service::Order => self.order_database_url.as_deref(),
            Service::Auth | Service::Cart => None,
        };
        configured.map_or_else(|| sqlite_url_in(&self.data_dir, service), str::to_owned)
    }

    /// Opens the three databases and audits them.
    pub async fn audit(&self) -> Result<shop_services::audit::AuditReport, shop_services::ServiceError> {
        use shop_services::db::{Database, PoolConfig};
        let pool = PoolConfig::default();
        let open = |s: Service| {
            let url = self.database_url(s);
            let pool = pool.clone();
            async move { Database::open(s, &url, &pool).await }
        };
        let (products, payments, orders) =
            (open(Service::Product).await?, open(Service::Payment).await?, open(Service::Order).await?);
        let report =
            shop_services::audit::audit(&*products.products(), &*payments.payments(), &*orders.orders())
                .await;
        for db in [products, payments, orders] {
            db.close().await;
        }
        report
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceArg {
    Auth,
    Product,
    Cart,
    Payment,
    Order,
}

impl From<ServiceArg> for Service {
    fn from(s: ServiceArg) -> Self {
        match s {
            ServiceArg::Auth => Service::Auth,
            ServiceArg::Product => Service::Product,
            ServiceArg::Cart => Service::Cart,
            ServiceArg::Payment => Service::Payment,
            ServiceArg::Order => Service::Order,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// The service this process runs.
    #[arg(value_enum)]
    pub service: ServiceArg,
    #[command(flatten)]
    pub run: RunConfig,
    /// Kafka bootstrap servers (the Cart and Order services need them).
    #[arg(long, env = "SHOP_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Partitions of ORDER_EVENTS / ORDER_CREATED when they are created at start-up.
    #[arg(long, env = "SHOP_KAFKA_PARTITIONS", default_value_t = 3)]
    pub kafka_partitions: i32,
    /// How long a publish may wait for the broker (librdkafka retries meanwhile).
    #[arg(long, env = "SHOP_KAFKA_SEND_TIMEOUT_MS", default_value_t = 120_000)]
    pub kafka_send_timeout_ms: u64,
    /// Consumer group of the Cart service's instances.
    #[arg(long, env = "SHOP_KAFKA_GROUP", default_value = "cart-service")]
    pub kafka_group: String,
    /// Where the Product service answers (the Cart service looks products up there).
    #[arg(long, env = "SHOP_PRODUCT_URL")]
    pub product_url: Option<String>,
    /// Where the Cart service answers (the Order service leases carts there).
    #[arg(long, env = "SHOP_CART_URL")]
    pub cart_url: Option<String>,
    /// Where the Payment service answers (the Order service charges there).
    #[arg(long, env = "SHOP_PAYMENT_URL")]
    pub payment_url: Option<String>,
}

/// The embedded default: the service's SQLite file in the data dir.
pub fn sqlite_url_in(data_dir: &std::path::Path, service: Service) -> String {
    format!("sqlite://{}", data_dir.join(format!("{}.db", service.name())).display())
}

fn secret(s: &str) -> Result<Secret, String> {
    if s.is_empty() { Err("must not be empty".into()) } else { Ok(Secret::new(s)) }
}

#[derive(Args, Debug, Clone)]
pub struct RunConfig {
    /// Where the SQLite databases (one per service) and the generated JWT secret live.
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The address the five services listen on.
    #[arg(long, env = "SHOP_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, env = "SHOP_AUTH_PORT", default_value_t = 8080)]
    pub auth_port: u16,
    #[arg(long, env = "SHOP_PRODUCT_PORT", default_value_t = 8081)]
    pub product_port: u16,
    #[arg(long, env = "SHOP_CART_PORT", default_value_t = 8082)]
    pub cart_port: u16,
    #[arg(long, env = "SHOP_PAYMENT_PORT", default_value_t = 8083)]
    pub payment_port: u16,
    #[arg(long, env = "SHOP_ORDER_PORT", default_value_t = 8084)]
    pub order_port: u16,
    /// Database URLs (`sqlite://path` or `mysql://user:pass@host:3306/auth_db`); by default
    /// `sqlite://<data dir>/<service>.db`. A MySQL database is created if it does not exist.
    #[arg(long, env = "SHOP_AUTH_DATABASE_URL")]
    pub auth_database_url: Option<String>,
    #[arg(long, env = "SHOP_PRODUCT_DATABASE_URL")]
    pub product_database_url: Option<String>,
    #[arg(long, env = "SHOP_CART_DATABASE_URL")]
    pub cart_database_url: Option<String>,
    #[arg(long, env = "SHOP_PAYMENT_DATABASE_URL")]
    pub payment_database_url: Option<String>,
    #[arg(long, env = "SHOP_ORDER_DATABASE_URL")]
    pub order_database_url: Option<String>,
    /// Secret for HS256 tokens. Embedded mode makes one (kept in the data dir) when unset.
    #[arg(long, env = "SHOP_JWT_SECRET", hide_env_values = true, value_parser = secret)]
    pub jwt_secret: Option<Secret>,
    #[arg(long, env = "SHOP_JWT_TTL_SECS", default_value_t = 86_400)]
    pub jwt_ttl_secs: u64,
    /// When set, user `admin` exists with role ADMIN and this password.
    #[arg(long, env = "SHOP_ADMIN_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub admin_password: Option<Secret>,
    #[arg(long, env = "SHOP_BCRYPT_COST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,
    /// Threads computing password hashes, at the lowest CPU priority (nice 19), so that a login
    /// flood only uses CPU that checkouts leave idle.
    #[arg(long, env = "SHOP_HASH_CONCURRENCY", default_value_t = 1)]
    pub hash_concurrency: usize,
    /// Logins and registrations waiting for a hashing thread; beyond it they get 503.
    #[arg(long, env = "SHOP_HASH_QUEUE", default_value_t = 256)]
    pub hash_queue: usize,
    /// The share of its time each hashing thread may spend hashing: it rests after every hash
    /// so that a login flood cannot keep a CPU busy (above 0, at most 1).
    #[arg(long, env = "SHOP_HASH_CPU_SHARE", default_value_t = 0.5)]
    pub hash_cpu_share: f64,
    /// Probability that the mock gateway approves a charge.
    #[arg(long, env = "SHOP_PAYMENT_SUCCESS_RATE", default_value_t = 0.8)]
    pub payment_success_rate: f64,
    /// Makes the mock gateway's outcomes reproducible.
    #[arg(long, env = "SHOP_PAYMENT_SEED")]
    pub payment_seed: Option<u64>,
    #[arg(long, env = "SHOP_PAYMENT_LATENCY_MS", default_value_t = 0)]
    pub payment_latency_ms: u64,
    /// Payment actors, each taking one charge at a time.
    #[arg(long, env = "SHOP_PAYMENT_WORKERS", default_value_t = 16)]
    pub payment_workers: usize,
    /// Charges that may wait per payment actor; beyond that checkouts wait, then get 503.
    #[arg(long, env = "SHOP_PAYMENT_QUEUE", default_value_t = 16)]
    pub payment_queue: usize,
    /// Arbiter threads for the actors (default: one per core).
    #[arg(long, env = "SHOP_ARBITERS")]
    pub arbiters: Option<usize>,
    /// Threads serving HTTP (default: one per core). Processes sharing one machine (distributed
    /// mode on a single host) share its cores: give each fewer, and fewer thread switches follow.
    #[arg(long, env = "SHOP_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Seconds a cart or order actor may sit idle before it is passivated.
    #[arg(long, env = "SHOP_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub idle_timeout_secs: u64,
    /// Milliseconds a request waits for a cart or order actor before it gets 503.
    #[arg(long, env = "SHOP_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Read connections per SQLite database (writes always use one).
    #[arg(long, env = "SHOP_DB_READ_CONNECTIONS", default_value_t = 4)]
    pub db_read_connections: u32,
    /// Connections per MySQL database pool.
    #[arg(long, env = "SHOP_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,
    /// Milliseconds a query waits for a free database connection.
    #[arg(long, env = "SHOP_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 10_000)]
    pub db_acquire_timeout_ms: u64,
}

impl RunConfig {
    /// The defaults, as `shop run` with no flags and no environment would have them.
    pub fn defaults() -> Self {
        Cli::parse_from(["shop"]).run
    }

    pub fn port(&self, service: Service) -> u16 {
        match service {
            Service::Auth => self.auth_port,
            Service::Product => self.product_port,
            Service::Cart => self.cart_port,
            Service::Payment => self.payment_port,
            Service::Order => self.order_port,
        }
    }

    pub fn set_port(&mut self, service: Service, port: u16) {
        match service {
            Service::Auth => self.auth_port = port,
            Service::Product => self.product_port = port,
            Service::Cart => self.cart_port = port,
            Service::Payment => self.payment_port = port,
            Service::Order => self.order_port = port,
        }
    }

    pub fn database_url(&self, service: Service) -> Option<&str> {
        match service {
            Service::Auth => self.auth_database_url.as_deref(),
            Service::Product => self.product_database_url.as_deref(),
            Service::Cart => self.cart_database_url.as_deref(),
            Service::Payment => self.payment_database_url.as_deref(),
            Service::Order => self.order_database_url.as_deref(),
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
