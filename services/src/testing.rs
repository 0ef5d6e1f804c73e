//! Helpers for tests that need a real database: fresh MySQL databases on the server the tests
//! use, a guard that drops them when the test ends (also when it fails), and a clear failure
//! when that server is not there. Built only with the `test-support` feature.

use crate::Service;
use crate::storage::{Database, PoolConfig};

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

/// Drops a database a test created (best effort: a left-over test database harms nothing, and
/// `scripts/test` drops those an earlier run left).
pub async fn drop_mysql(url: &str) {
    use sqlx::migrate::MigrateDatabase;
    if let Err(e) = sqlx::MySql::drop_database(url).await {
        tracing::warn!(url, error = %e, "could not drop a test database");
    }
}

/// MySQL databases a test made, dropped when the guard is dropped: at the end of the test, or
/// while a failing test unwinds.
#[derive(Debug, Default)]
pub struct MySqlDatabases {
    urls: Vec<String>,
}

impl MySqlDatabases {
    /// Creates and migrates a fresh database for `service` (failing the test with what to start
    /// if the server is not there) and returns its URL; the guard drops it later.
    pub async fn create(&mut self, service: Service) -> String {
        let url = fresh_mysql_url(service);
        self.urls.push(url.clone());
        open_or_explain(service, &url).await.close().await;
        url
    }
}

impl Drop for MySqlDatabases {
    fn drop(&mut self) {
        let urls = std::mem::take(&mut self.urls);
        if urls.is_empty() {
            return;
        }
        // Drop cannot await, and may run inside a runtime: a thread of its own with a small
        // runtime drops the databases and is waited for.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                for url in &urls {
                    drop_mysql(url).await;
                }
            });
        });
        let _ = dropper.join();
    }
}
