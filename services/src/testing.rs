//! Helpers for tests that need a real database: fresh MySQL databases on the server the tests
//! use, and a clear failure when that server is not there.

use crate::db::{Database, PoolConfig, Service};

/// What a test that cannot reach MySQL says to do.
pub const START_MYSQL: &str = "These tests need a MySQL-compatible server. Start MariaDB with \
     `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd` \
     (or `docker compose up -d mysql`), or point SHOP_TEST_MYSQL_URL at one \
     (a user that may create databases).";

/// The MySQL server tests use: `SHOP_TEST_MYSQL_URL`, or MariaDB/MySQL as root on 127.0.0.1:3306.
pub fn mysql_server_url() -> String {
    std::env::var("SHOP_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

/// A URL for a database of `service` that does not exist yet (opening it creates it).
pub fn fresh_mysql_url(service: Service) -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{}/shop_test_{}_{}", mysql_server_url().trim_end_matches('/'), &tag[..12], service.name())
}

/// Opens (creating and migrating) the database at `url`, or fails the test with what to start.
pub async fn open_or_explain(service: Service, url: &str) -> Database {
    match Database::open(service, url, &PoolConfig::default()).await {
        Ok(db) => db,
        Err(e) => panic!("cannot open {url}: {e}\n{START_MYSQL}"),
    }
}

/// Drops a database a test created (best effort: a left-over test database harms nothing).
pub async fn drop_mysql(url: &str) {
    use sqlx::migrate::MigrateDatabase;
    if let Err(e) = sqlx::MySql::drop_database(url).await {
        tracing::warn!(url, error = %e, "could not drop a test database");
    }
}
