//! `shop audit` (and `shop load --audit`): opens the Product, Payment and Order databases where
//! the services keep them and checks the invariants across them.

use clap::Args;
use shop_services::storage::{Database, PoolConfig};
use shop_services::tools::audit::{AuditOptions, AuditReport, audit};
use shop_services::{Service, ServiceError};

use crate::config::StorageConfig;

/// Where the databases are: the same settings the services use (SQLite under the data dir
/// unless a URL is given).
#[derive(Args, Debug, Clone)]
pub struct AuditConfig {
    #[command(flatten)]
    pub storage: StorageConfig,
    /// Checkouts younger than this (milliseconds since their last change) may still be running:
    /// their PENDING orders are counted in flight, not reported. 0 reports every one.
    #[arg(long, env = "SHOP_AUDIT_RECOVERY_THRESHOLD_MS", default_value_t = 0)]
    pub recovery_threshold_ms: u64,
}

impl AuditConfig {
    /// Opens the three databases and audits them.
    pub async fn audit(&self) -> Result<AuditReport, ServiceError> {
        let pool = PoolConfig::default();
        let open = |s: Service| {
            let url = self.storage.database_url(s);
            let pool = pool.clone();
            async move { Database::open(s, &url, &pool).await }
        };
        let (products, payments, orders) =
            (open(Service::Product).await?, open(Service::Payment).await?, open(Service::Order).await?);
        let options =
            AuditOptions { recovery_threshold: std::time::Duration::from_millis(self.recovery_threshold_ms) };
        let report = audit(&*products.products(), &*payments.payments(), &*orders.orders(), &options).await;
        for db in [products, payments, orders] {
            db.close().await;
        }
        report
    }
}
