//! Opening and migrating each service's database.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{ServiceError, ServiceResult};

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

/// A service's SQLite database. SQLite admits one writer at a time, so writes go through a
/// one-connection pool (they queue in the pool, not in SQLite's busy loop, and a transaction never
/// fails to upgrade from read to write); reads use a pool of their own and, in WAL mode, never
/// wait for the writer.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub read: SqlitePool,
    pub write: SqlitePool,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub read_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { read_connections: 4, acquire_timeout: Duration::from_secs(10) }
    }
}

impl SqliteDb {
    /// Opens (creating if needed) `path` and applies the service's migrations.
    pub async fn open(service: Service, path: &Path, pool: &PoolConfig) -> ServiceResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL survives a crash of the process (not of the machine) and keeps
            // commits off the fsync path.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|e| ServiceError::Internal(format!("opening {}: {e}", path.display())))?;
        service.sqlite_migrator().run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(pool.read_connections.max(1))
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { read, write })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
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
