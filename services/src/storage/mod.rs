//! Storage: each service's database, on SQLite (embedded mode) or MySQL (production).
//!
//! ```text
//!  storage/
//!    mod.rs      Database: opens and migrates a service's database, hands out its repositories
//!    common.rs   what both backends share: pool settings, money and time as stored, shared SQL
//!    sqlite/     db.rs (connection threads) + one file per repository
//!    mysql/      pool.rs (the connection pool) + one file per repository
//! ```
//!
//! Each repository implements its domain module's store trait ([`crate::auth::UserStore`],
//! [`crate::product::ProductStore`], [`crate::payment::PaymentStore`],
//! [`crate::order::OrderRepo`]) or the actor core's port (`CartStore`); the services hold
//! `Arc<dyn …>` and never see which backend is behind it. Storage depends on the domain, never
//! the reverse.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shop_actors::ports::CartStore;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::mysql::{MySql, MySqlConnectOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::Service;
use crate::auth::UserStore;
use crate::error::{ServiceError, ServiceResult};
use crate::order::OrderRepo;
use crate::payment::PaymentStore;
use crate::product::ProductStore;

pub(crate) mod common;
pub mod mysql;
pub mod sqlite;

pub use self::common::{PoolConfig, PoolStats, redact};
pub use self::mysql::pool::{MySqlDb, OnConnect};
pub use self::sqlite::db::SqliteDb;

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

    /// The repository of this database's backend: `sqlite` or `mysql` builds it.
    fn repository<T: ?Sized>(
        &self,
        sqlite: impl FnOnce(SqliteDb) -> Arc<T>,
        mysql: impl FnOnce(MySqlDb) -> Arc<T>,
    ) -> Arc<T> {
        match self {
            Self::Sqlite(db) => sqlite(db.clone()),
            Self::MySql(db) => mysql(db.clone()),
        }
    }

    pub fn users(&self) -> Arc<dyn UserStore> {
        self.repository::<dyn UserStore>(|db| Arc::new(sqlite::Users(db)), |db| Arc::new(mysql::Users(db)))
    }

    pub fn products(&self) -> Arc<dyn ProductStore> {
        self.repository::<dyn ProductStore>(
            |db| Arc::new(sqlite::Products(db)),
            |db| Arc::new(mysql::Products(db)),
        )
    }

    pub fn carts(&self) -> Arc<dyn CartStore> {
        self.repository::<dyn CartStore>(|db| Arc::new(sqlite::Carts(db)), |db| Arc::new(mysql::Carts(db)))
    }

    pub fn payments(&self) -> Arc<dyn PaymentStore> {
        self.repository::<dyn PaymentStore>(
            |db| Arc::new(sqlite::Payments(db)),
            |db| Arc::new(mysql::Payments(db)),
        )
    }

    pub fn orders(&self) -> Arc<dyn OrderRepo> {
        self.repository::<dyn OrderRepo>(|db| Arc::new(sqlite::Orders(db)), |db| Arc::new(mysql::Orders(db)))
    }

    /// How busy its connections are (`/metrics`).
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        match self {
            Self::Sqlite(db) => vec![db.write.stats("writer"), db.read.stats("readers")],
            Self::MySql(db) => vec![db.stats()],
        }
    }

    /// Whether the database answers a query now (`/ready`).
    pub async fn ping(&self) -> ServiceResult<()> {
        match self {
            Self::Sqlite(db) => db
                .read
                .run(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
                .await
                .map_err(|e| ServiceError::Internal(format!("SQLite: {e}"))),
            Self::MySql(db) => db
                .run(async |conn| sqlx::Connection::ping(conn).await)
                .await
                .map_err(|e| ServiceError::Internal(format!("MySQL: {e}"))),
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
    mysql_migrator(service).run(&mut *lease).await?;
    lease.release().await;
    Ok(db)
}

/// Creates (if missing) and migrates the service's SQLite file with sqlx's migrator, then starts
/// the connection threads the store uses ([`sqlite::db`]).
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
    sqlite_migrator(service).run(&migrations).await?;
    migrations.close().await;
    SqliteDb::start(path, pool.read_connections.max(1) as usize, pool.group_commit)
        .map_err(|e| ServiceError::Internal(format!("opening {}: {e}", path.display())))
}

fn mysql_migrator(service: Service) -> &'static Migrator {
    static AUTH: Migrator = sqlx::migrate!("../migrations/mysql/auth");
    static PRODUCT: Migrator = sqlx::migrate!("../migrations/mysql/product");
    static CART: Migrator = sqlx::migrate!("../migrations/mysql/cart");
    static PAYMENT: Migrator = sqlx::migrate!("../migrations/mysql/payment");
    static ORDER: Migrator = sqlx::migrate!("../migrations/mysql/order");
    match service {
        Service::Auth => &AUTH,
        Service::Product => &PRODUCT,
        Service::Cart => &CART,
        Service::Payment => &PAYMENT,
        Service::Order => &ORDER,
    }
}

fn sqlite_migrator(service: Service) -> &'static Migrator {
    static AUTH: Migrator = sqlx::migrate!("../migrations/sqlite/auth");
    static PRODUCT: Migrator = sqlx::migrate!("../migrations/sqlite/product");
    static CART: Migrator = sqlx::migrate!("../migrations/sqlite/cart");
    static PAYMENT: Migrator = sqlx::migrate!("../migrations/sqlite/payment");
    static ORDER: Migrator = sqlx::migrate!("../migrations/sqlite/order");
    match service {
        Service::Auth => &AUTH,
        Service::Product => &PRODUCT,
        Service::Cart => &CART,
        Service::Payment => &PAYMENT,
        Service::Order => &ORDER,
    }
}
