//! `shop audit` (and `shop load --audit`): opens the Product, Payment and Order databases where
//! the services keep them and checks the invariants across them.

use clap::Args;
use shop_services::storage::{Database, PoolConfig};
use shop_services::tools::audit::{AuditReport, audit};
use shop_services::{Service, ServiceError};

use crate::config::StorageConfig;

/// Where the databases are: the same settings the services use (SQLite under the data dir
/// unless a URL is given).
#[derive(Args, Debug, Clone)]
pub struct AuditConfig {
    #[command(flatten)]
    pub storage: StorageConfig,
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
        let report = audit(&*products.products(), &*payments.payments(), &*orders.orders()).await;
        for db in [products, payments, orders] {
            db.close().await;
        }
        report
    }
}
