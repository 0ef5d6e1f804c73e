//! Opening and migrating each service's database.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use shop_actors::ports::CartStore;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::mysql::{MySql, MySqlConnectOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{ServiceError, ServiceResult};
use crate::mysql_pool::{MySqlDb, OnConnect};
use crate::store::{self, OrderRepo, PaymentStore, ProductStore, UserStore};

/// The five services, each with its own database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Auth,
    Product,
    Cart,
    Payment,
    Order,
}

impl Service {
    pub const ALL: [Service; 5] =
        [Service::Auth, Service::Product, Service::Cart, Service::Payment, Service::Order];

    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Product => "product",
            Service::Cart => "cart",
            Service::Payment => "payment",
            Service::Order => "order",
        }
    }

    fn mysql_migrator(self) -> &'static Migrator {
        static AUTH: Migrator = sqlx::migrate!("../migrations/mysql/auth");
        static PRODUCT: Migrator = sqlx::migrate!("../migrations/mysql/product");
        static CART: Migrator = sqlx::migrate!("../migrations/mysql/cart");
        static PAYMENT: Migrator = sqlx::migrate!("../migrations/mysql/payment");
        static ORDER: Migrator = sqlx::migrate!("../migrations/mysql/order");
        match self {
            Service::Auth => &AUTH,
            Service::Product => &PRODUCT,
            Service::Cart => &CART,
            Service::Payment => &PAYMENT,
            Service::Order => &ORDER,
        }
    }

    fn sqlite_migrator(self) -> &'static Migrator {
        static AUTH: Migrator = sqlx::migrate!("../migrations/sqlite/auth");
        static PRODUCT: Migrator = sqlx::migrate!("../migrations/sqlite/product");
        static CART: Migrator = sqlx::migrate!("../migrations/sqlite/cart");
        static PAYMENT: Migrator = sqlx::migrate!("../migrations/sqlite/payment");
        static ORDER: Migrator = sqlx::migrate!("../migrations/sqlite/order");
        match self {
            Service::Auth => &AUTH,
            Service::Product => &PRODUCT,
            Service::Cart => &CART,
            Service::Payment => &PAYMENT,
            Service::Order => &ORDER,
        }
    }
}

/// A service's SQLite database: one writer thread and a few reader threads
/// ([`crate::sqlite_db`]).
pub use crate::sqlite_db::SqliteDb;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// SQLite: read connections per database (writes always use one).
    pub read_connections: u32,
    /// MySQL: connections per database pool.
    pub max_connections: u32,
    /// How long a query waits for a free connection.
    pub acquire_timeout: Duration,
    /// MySQL: a connection that has rested in the pool this long is pinged before it is used
    /// ([`crate::mysql_pool`]).
    pub ping_after_idle: Duration,
}

impl Default for PoolConfig {
    /// Sized for a 2-core machine: more connections than that only queue inside the server.
    fn default() -> Self {
        Self {
            read_connections: 4,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            ping_after_idle: Duration::from_secs(1),
        }
    }
}

/// A service's database, on either backend.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(SqliteDb),
    MySql(MySqlDb),
}

impl Database {
    /// Opens the database at `url` (`sqlite://path` or `mysql://user@host/db`), creating it if it
    /// does not exist yet, and applies the service's migrations.
    pub async fn open(service: Service, url: &str, pool: &PoolConfig) -> ServiceResult<Self> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err(ServiceError::Invalid(format!("{url:?} names no file")));
            }
            return Ok(Self::Sqlite(open_sqlite(service, Path::new(path), pool).await?));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            return Ok(Self::MySql(open_mysql(service, url, pool).await?));
        }
        Err(ServiceError::Invalid(format!(
            "unsupported database URL for the {} service (use sqlite://<path> or mysql://<user>@<host>/<db>)",
            service.name()
        )))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::MySql(_) => "mysql",
        }
    }

    pub fn users(&self) -> Arc<dyn UserStore> {
        match self {
            Self::Sqlite(db) => Arc::new(store::sqlite::Users(db.clone())),
            Self::MySql(db) => Arc::new(store::mysql::Users(db.clone())),
        }
    }

    pub fn products(&self) -> Arc<dyn ProductStore> {
        match self {
            Self::Sqlite(db) => Arc::new(store::sqlite::Products(db.clone())),
            Self::MySql(db) => Arc::new(store::mysql::Products(db.clone())),
        }
    }

    pub fn carts(&self) -> Arc<dyn CartStore> {
        match self {
            Self::Sqlite(db) => Arc::new(store::sqlite::Carts(db.clone())),
            Self::MySql(db) => Arc::new(store::mysql::Carts(db.clone())),
        }
    }

    pub fn payments(&self) -> Arc<dyn PaymentStore> {
        match self {
            Self::Sqlite(db) => Arc::new(store::sqlite::Payments(db.clone())),
            Self::MySql(db) => Arc::new(store::mysql::Payments(db.clone())),
        }
    }

    pub fn orders(&self) -> Arc<dyn OrderRepo> {
        match self {
            Self::Sqlite(db) => Arc::new(store::sqlite::Orders(db.clone())),
            Self::MySql(db) => Arc::new(store::mysql::Orders(db.clone())),
        }
    }

    pub async fn close(&self) {
        match self {
            // Its threads end when the last handle on it is dropped.
            Self::Sqlite(_) => {}
            Self::MySql(db) => db.close().await,
        }
    }
}

async fn open_mysql(service: Service, url: &str, pool: &PoolConfig) -> ServiceResult<MySqlDb> {
    let url = url.replacen("mariadb://", "mysql://", 1);
    let unreachable = |e: sqlx::Error| {
        ServiceError::Internal(format!("{} database at {}: {e}", service.name(), redact(&url)))
    };
    if !MySql::database_exists(&url).await.map_err(unreachable)? {
        // Another instance may create it between the check and here; that is fine.
        if let Err(e) = MySql::create_database(&url).await
            && !MySql::database_exists(&url).await.map_err(unreachable)?
        {
            return Err(unreachable(e));
        }
    }
    let options: MySqlConnectOptions = url.parse().map_err(unreachable)?;
    // Every write is fenced by a version or a unique key, so nothing needs REPEATABLE READ's gap
    // locks, which made concurrent saves of different carts deadlock on the cart_items index (the
    // distributed load in docs/PERFORMANCE.md). READ COMMITTED locks only the rows a statement
    // touches.
    let read_committed: OnConnect = Arc::new(|conn| {
        Box::pin(async move {
            sqlx::Executor::execute(conn, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
            Ok(())
        })
    });
    let db = MySqlDb::connect(options, pool, read_committed).await.map_err(unreachable)?;
    // The migrator holds a database lock while it runs, so instances starting together are safe.
    let mut lease = db.acquire().await.map_err(unreachable)?;
    service.mysql_migrator().run(&mut *lease).await?;
    lease.release().await;
    Ok(db)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The current time as stored: microseconds, which both backends keep exactly.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Creates (if missing) and migrates the service's SQLite file with sqlx's migrator, then starts
/// the connection threads the store uses ([`crate::sqlite_db`]).
async fn open_sqlite(service: Service, path: &Path, pool: &PoolConfig) -> ServiceResult<SqliteDb> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let migrations = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(pool.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|e| ServiceError::Internal(format!("opening {}: {e}", path.display())))?;
    service.sqlite_migrator().run(&migrations).await?;
    migrations.close().await;
    SqliteDb::start(path, pool.read_connections.max(1) as usize)
        .map_err(|e| ServiceError::Internal(format!("opening {}: {e}", path.display())))
}

/// Parses money stored as decimal text.
pub fn decimal(text: &str) -> ServiceResult<Decimal> {
    Decimal::from_str(text).map_err(|e| ServiceError::Internal(format!("stored amount {text:?}: {e}")))
}

/// Money as stored: always two places.
pub fn money_text(amount: Decimal) -> String {
    let mut a = amount;
    a.rescale(2);
    a.to_string()
}

/// Whether `e` is a UNIQUE constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
