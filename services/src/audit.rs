//! Checks the invariants that span the five databases.

use std::collections::HashMap;

use serde::Serialize;

use crate::db::SqliteDb;
use crate::error::ServiceResult;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub orders: i64,
    pub orders_by_status: HashMap<String, i64>,
    pub payments: i64,
    pub payments_by_status: HashMap<String, i64>,
    /// Each broken invariant, in words.
    pub violations: Vec<String>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Compares orders with payments and looks for impossible states: orders left PENDING,
/// payments without an order, paid orders without a successful payment, negative stock.
pub async fn audit(product: &SqliteDb, payment: &SqliteDb, order: &SqliteDb) -> ServiceResult<AuditReport> {
    let orders: Vec<(i64, String, Option<i64>, String)> =
        sqlx::query_as("SELECT id, status, payment_id, total_amount FROM orders")
            .fetch_all(&order.read)
            .await?;
    let payments: Vec<(i64, i64, String, String)> =
        sqlx::query_as("SELECT id, order_id, status, amount FROM payments").fetch_all(&payment.read).await?;
    let negative: Vec<(i64,)> =
        sqlx::query_as("SELECT id FROM products WHERE stock < 0").fetch_all(&product.read).await?;

    let mut report = AuditReport {
        orders: i64::try_from(orders.len()).unwrap_or(i64::MAX),
        payments: i64::try_from(payments.len()).unwrap_or(i64::MAX),
        ..AuditReport::default()
    };
    for (_, status, _, _) in &orders {
        *report.orders_by_status.entry(status.clone()).or_default() += 1;
    }
    for (_, _, status, _) in &payments {
        *report.payments_by_status.entry(status.clone()).or_default() += 1;
    }
    let by_order: HashMap<i64, &(i64, i64, String, String)> = payments.iter().map(|p| (p.1, p)).collect();
    let v = &mut report.violations;
    for (id, status, payment_id, total) in &orders {
        let payment = by_order.get(id);
        match (status.as_str(), payment) {
            ("PENDING", _) => v.push(format!("order {id} is still PENDING")),
            ("PAID" | "SHIPPED" | "DELIVERED", Some(p)) if p.2 == "SUCCESS" => {}
            ("CANCELLED", Some(p)) if p.2 == "FAILED" => {}
            (_, None) => v.push(format!("order {id} is {status} but has no payment")),
            (_, Some(p)) => v.push(format!("order {id} is {status} but its payment {} is {}", p.0, p.2)),
        }
        if let Some(p) = payment {
            if *payment_id != Some(p.0) {
                v.push(format!("order {id} names payment {payment_id:?}, the payment service has {}", p.0));
            }
            if p.3 != *total {
                v.push(format!("order {id} totals {total} but was charged {}", p.3));
            }
        }
    }
    let order_ids: std::collections::HashSet<i64> = orders.iter().map(|o| o.0).collect();
    for (pid, order_id, _, _) in &payments {
        if !order_ids.contains(order_id) {
            v.push(format!("payment {pid} is for order {order_id}, which does not exist"));
        }
    }
    for (id,) in negative {
        v.push(format!("product {id} has negative stock"));
    }
    Ok(report)
}
