//! The settings of `shop run` and `shop serve`, with their environment fallbacks: one typed
//! struct per command. Settings every service has (its port, its database) are keyed by
//! [`Service`]: `--<service>-port` / `SHOP_<SERVICE>_PORT`, `--<service>-database-url` /
//! `SHOP_<SERVICE>_DATABASE_URL`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgMatches, Args, FromArgMatches};
use shop_services::Service;
use shop_services::auth::Secret;

/// Where the services keep their data: a data dir for SQLite files and the generated secret, and
/// a database URL per service (by default its SQLite file in the data dir).
#[derive(Args, Debug, Clone)]
pub struct StorageConfig {
    /// Where the SQLite databases (one per service) and the generated JWT secret live.
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub database_urls: DatabaseUrls,
}

impl StorageConfig {
    /// The service's database URL: as configured, or its SQLite file under the data dir.
    pub fn database_url(&self, service: Service) -> String {
        self.database_urls.0[service.index()].clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join(format!("{}.db", service.name())).display())
        })
    }

    pub fn set_database_url(&mut self, service: Service, url: impl Into<String>) {
        self.database_urls.0[service.index()] = Some(url.into());
    }

    /// Creates the data dir if a service keeps its database there.
    pub fn ensure_data_dir(&self, services: &[Service]) -> Result<(), String> {
        if services.iter().all(|s| self.database_urls.0[s.index()].is_some()) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", self.data_dir.display()))
    }
}

/// `--<service>-port`, `SHOP_<SERVICE>_PORT`: 8080 (auth) … 8084 (order); 0 picks a free one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(pub [u16; 5]);

/// `--<service>-database-url`, `SHOP_<SERVICE>_DATABASE_URL`: `sqlite://path` or
/// `mysql://user:pass@host:3306/<service>_db` (created and migrated at start-up if missing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatabaseUrls(pub [Option<String>; 5]);

/// One argument per service: `--<service>-<setting>`, with `SHOP_<SERVICE>_<SETTING>`.
fn per_service(
    cmd: clap::Command,
    setting: &str,
    value_name: &'static str,
    help: &str,
    default: impl Fn(Service) -> Option<String>,
    parser: clap::builder::ValueParser,
    secret: bool,
) -> clap::Command {
    Service::ALL.iter().fold(cmd, |cmd, &service| {
        let id = format!("{}-{setting}", service.name());
        let env = format!("SHOP_{}", id.to_uppercase().replace('-', "_"));
        let arg = Arg::new(id.clone())
            .long(id)
            .env(env)
            .value_name(value_name)
            .help(format!("{help} of the {} service", service.name()))
            .value_parser(parser.clone())
            .hide_env_values(secret);
        cmd.arg(match default(service) {
            Some(d) => arg.default_value(d),
            None => arg,
        })
    })
}

/// The values of one per-service setting, as parsed.
fn values<T: Clone + Send + Sync + 'static>(
    m: &ArgMatches,
    setting: &str,
) -> Result<[Option<T>; 5], clap::Error> {
    let mut out: [Option<T>; 5] = Default::default();
    for service in Service::ALL {
        let id = format!("{}-{setting}", service.name());
        out[service.index()] = m
            .try_get_one::<T>(&id)
            .map_err(|e| clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, e))?
            .cloned();
    }
    Ok(out)
}

const PORT: &str = "port";
const DATABASE_URL: &str = "database-url";

impl FromArgMatches for Ports {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut ports = Self([0; 5]);
        ports.update_from_arg_matches(m)?;
        Ok(ports)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for (slot, value) in self.0.iter_mut().zip(values::<u16>(m, PORT)?) {
            if let Some(v) = value {
                *slot = v;
            }
        }
        Ok(())
    }
}

impl Args for Ports {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let default = |s: Service| Some((8080 + s.index()).to_string());
        per_service(cmd, PORT, "PORT", "Port", default, clap::value_parser!(u16).into(), false)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for DatabaseUrls {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut urls = Self::default();
        urls.update_from_arg_matches(m)?;
        Ok(urls)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for (slot, value) in self.0.iter_mut().zip(values::<String>(m, DATABASE_URL)?) {
            if value.is_some() {
                *slot = value;
            }
        }
        Ok(())
    }
}

impl Args for DatabaseUrls {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let parser = clap::builder::NonEmptyStringValueParser::new().into();
        per_service(
            cmd,
            DATABASE_URL,
            "URL",
            "Database URL (sqlite://path or mysql://…)",
            |_| None,
            parser,
            true,
        )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceArg {
    Auth,
    Product,
    Cart,
    Payment,
    Order,
    /// The API gateway and storefront (port 8000), in front of the services' URLs.
    Gateway,
}

impl ServiceArg {
    /// The service this process runs; `None` for the gateway, which is none of the five.
    pub fn service(self) -> Option<Service> {
        match self {
            ServiceArg::Auth => Some(Service::Auth),
            ServiceArg::Product => Some(Service::Product),
            ServiceArg::Cart => Some(Service::Cart),
            ServiceArg::Payment => Some(Service::Payment),
            ServiceArg::Order => Some(Service::Order),
            ServiceArg::Gateway => None,
        }
    }

    /// Its name in logs and traces: `auth` … `order`, `gateway`.
    pub fn name(self) -> &'static str {
        self.service().map_or("gateway", Service::name)
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
    /// The longest the broker may hold the Cart consumer's fetch of an idle partition
    /// (`fetch.wait.max.ms`).
    #[arg(long, env = "SHOP_KAFKA_FETCH_WAIT_MS", default_value_t = shop_services::kafka::DEFAULT_FETCH_WAIT_MS)]
    pub kafka_fetch_wait_ms: u64,
    /// How long the Cart service answers a cart add from its snapshot of a product instead of
    /// asking the Product service again (0: ask every time).
    #[arg(long, env = "SHOP_CATALOG_TTL_MS", default_value_t = 1_000)]
    pub catalog_ttl_ms: u64,
    /// Consumer group of the Cart service's instances.
    #[arg(long, env = "SHOP_KAFKA_GROUP", default_value = "cart-service")]
    pub kafka_group: String,
    /// The Product service ends each checkout's stock reservation from the outcome's event on
    /// `ORDER_EVENTS` (a consumer group of its own), and the saga does not ask it: one HTTP hop
    /// fewer per checkout, one more consumer group on the broker (measured in
    /// docs/PERFORMANCE.md). Give the Order and the Product service the same value; `false`:
    /// the saga asks Product, and Product needs no broker.
    #[arg(
        long,
        env = "SHOP_STOCK_FOLLOWS_EVENTS",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set,
        default_value_t = true
    )]
    pub stock_follows_events: bool,
    /// Consumer group of the Product service's instances, with `SHOP_STOCK_FOLLOWS_EVENTS`
    /// (default: SHOP_KAFKA_GROUP followed by `-stock`).
    #[arg(long, env = "SHOP_KAFKA_STOCK_GROUP")]
    pub kafka_stock_group: Option<String>,
    /// Where the Auth service answers (the gateway routes `/api/auth` there).
    #[arg(long, env = "SHOP_AUTH_URL")]
    pub auth_url: Option<String>,
    /// Where the Order service answers (the gateway routes `/api/orders` there).
    #[arg(long, env = "SHOP_ORDER_URL")]
    pub order_url: Option<String>,
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

fn secret(s: &str) -> Result<Secret, String> {
    if s.is_empty() { Err("must not be empty".into()) } else { Ok(Secret::new(s)) }
}

#[derive(Args, Debug, Clone)]
pub struct RunConfig {
    /// Where each service's database is.
    #[command(flatten)]
    pub storage: StorageConfig,
    /// The address the five services listen on.
    #[arg(long, env = "SHOP_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[command(flatten)]
    pub ports: Ports,
    /// The API gateway's port (the storefront is at its `/`); 0 picks a free one.
    #[arg(long, env = "SHOP_GATEWAY_PORT", default_value_t = 8000)]
    pub gateway_port: u16,
    /// Milliseconds the gateway waits for a service's answer before it answers 504.
    #[arg(long, env = "SHOP_GATEWAY_TIMEOUT_MS", default_value_t = 30_000)]
    pub gateway_timeout_ms: u64,
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
    /// Failed logins for one account within `SHOP_LOGIN_WINDOW_SECS` before it is answered 429.
    #[arg(long, env = "SHOP_LOGIN_ACCOUNT_FAILURES", default_value_t = 5)]
    pub login_account_failures: usize,
    /// Failed logins from one client address within the window before it is answered 429.
    #[arg(long, env = "SHOP_LOGIN_ADDRESS_FAILURES", default_value_t = 20)]
    pub login_address_failures: usize,
    /// Proxies (the gateway's address, in distributed mode) whose `X-Forwarded-For` names the
    /// client for the login and registration limits; comma-separated. Empty: the peer counts.
    #[arg(long, env = "SHOP_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,
    #[arg(long, env = "SHOP_LOGIN_WINDOW_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub login_window_secs: u64,
    /// Registrations from one client address per `SHOP_REGISTER_WINDOW_SECS`; 0 turns the limit
    /// off (a load test registering its users from one machine).
    #[arg(long, env = "SHOP_REGISTER_PER_ADDRESS", default_value_t = 20)]
    pub register_per_address: usize,
    #[arg(long, env = "SHOP_REGISTER_WINDOW_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub register_window_secs: u64,
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
    /// The most writes an SQLite writer puts under one commit (group commit; 1: each write
    /// commits alone).
    #[arg(long, env = "SHOP_DB_GROUP_COMMIT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub db_group_commit: u32,
    /// Connections per MySQL database pool.
    #[arg(long, env = "SHOP_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,
    /// Milliseconds a query waits for a free database connection.
    #[arg(long, env = "SHOP_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 10_000)]
    pub db_acquire_timeout_ms: u64,
    /// Seconds a stock reservation holds its units when nobody commits or releases it.
    #[arg(long, env = "SHOP_RESERVATION_TTL_SECS", default_value_t = 900)]
    pub reservation_ttl_secs: u64,
    /// Milliseconds between looks for expired stock reservations.
    #[arg(long, env = "SHOP_RESERVATION_SWEEP_MS", default_value_t = 30_000)]
    pub reservation_sweep_ms: u64,
    /// Milliseconds a checkout's forward steps may take in all before it compensates.
    #[arg(long, env = "SHOP_CHECKOUT_DEADLINE_MS", default_value_t = 30_000)]
    pub checkout_deadline_ms: u64,
    /// Milliseconds a stopping service (SIGTERM) gives its in-flight requests, checkouts among
    /// them, to finish; what is still running then is left to recovery.
    #[arg(long, env = "SHOP_SHUTDOWN_GRACE_MS", default_value_t = 35_000)]
    pub shutdown_grace_ms: u64,
    /// Milliseconds one call to Payment may take (it is asked again, idempotently, a few times).
    #[arg(long, env = "SHOP_PAYMENT_TIMEOUT_MS", default_value_t = 2_000)]
    pub payment_timeout_ms: u64,
    /// Charges in a row that could not be taken before new checkouts are refused at once (503)
    /// while Payment is unreachable (0: never).
    #[arg(long, env = "SHOP_BREAKER_FAILURES", default_value_t = 3)]
    pub breaker_failures: u32,
    /// Milliseconds the payment breaker stays open before it lets a probe checkout through.
    #[arg(long, env = "SHOP_BREAKER_OPEN_MS", default_value_t = 2_000)]
    pub breaker_open_ms: u64,
    /// Milliseconds after its last change a checkout counts as stuck and recovery ends it.
    #[arg(long, env = "SHOP_RECOVERY_THRESHOLD_MS", default_value_t = 90_000)]
    pub recovery_threshold_ms: u64,
    /// Milliseconds between recovery rounds (the first runs at start-up).
    #[arg(long, env = "SHOP_RECOVERY_INTERVAL_MS", default_value_t = 10_000)]
    pub recovery_interval_ms: u64,
}

impl RunConfig {
    /// The defaults, as `shop run` with no flags and no environment would have them.
    pub fn defaults() -> Self {
        let matches = Self::augment_args(clap::Command::new("shop")).get_matches_from(["shop"]);
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    pub fn port(&self, service: Service) -> u16 {
        self.ports.0[service.index()]
    }

    pub fn set_port(&mut self, service: Service, port: u16) {
        self.ports.0[service.index()] = port;
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn payment_timeout(&self) -> Duration {
        Duration::from_millis(self.payment_timeout_ms.max(1))
    }
}
