//! Checks the invariants that span the service databases.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use shop_actors::model::PaymentStatus;

use crate::error::ServiceResult;
use crate::order::OrderRepo;
use crate::payment::PaymentStore;
use crate::product::ProductStore;

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

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Compares orders with payments and looks for impossible states: orders left PENDING, payments
/// without an order, paid orders without a successful payment, amounts that differ, negative stock.
pub async fn audit(
    products: &dyn ProductStore,
    payments: &dyn PaymentStore,
    orders: &dyn OrderRepo,
) -> ServiceResult<AuditReport> {
    let orders = orders.summaries().await?;
    let payments = payments.summaries().await?;
    let negative = products.negative_stock().await?;

    let mut report =
        AuditReport { orders: count(orders.len()), payments: count(payments.len()), ..Default::default() };
    for o in &orders {
        *report.orders_by_status.entry(o.status.clone()).or_default() += 1;
    }
    for p in &payments {
        let status = if p.status == PaymentStatus::Success { "SUCCESS" } else { "FAILED" };
        *report.payments_by_status.entry(status.to_owned()).or_default() += 1;
    }
    let by_order: HashMap<i64, _> = payments.iter().map(|p| (p.order_id, p)).collect();
    let v = &mut report.violations;
    for o in &orders {
        let payment = by_order.get(&o.id);
        match (o.status.as_str(), payment) {
            ("PENDING", _) => v.push(format!("order {} is still PENDING", o.id)),
            ("PAID" | "SHIPPED" | "DELIVERED", Some(p)) if p.status == PaymentStatus::Success => {}
            ("CANCELLED", Some(p)) if p.status == PaymentStatus::Failed => {}
            (_, None) => v.push(format!("order {} is {} but has no payment", o.id, o.status)),
            (_, Some(p)) => {
                v.push(format!("order {} is {} but its payment {} is {:?}", o.id, o.status, p.id, p.status))
            }
        }
        if let Some(p) = payment {
            if o.payment_id != Some(p.id) {
                v.push(format!(
                    "order {} names payment {:?}, the payment service has {}",
                    o.id, o.payment_id, p.id
                ));
            }
            if p.amount != o.total_amount {
                v.push(format!("order {} totals {} but was charged {}", o.id, o.total_amount, p.amount));
            }
        }
    }
    let order_ids: HashSet<i64> = orders.iter().map(|o| o.id).collect();
    for p in &payments {
        if !order_ids.contains(&p.order_id) {
            v.push(format!("payment {} is for order {}, which does not exist", p.id, p.order_id));
        }
    }
    for id in negative {
        v.push(format!("product {id} has negative stock"));
    }
    Ok(report)
}
