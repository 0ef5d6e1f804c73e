//! Checks the invariants that span the service databases.
//!
//! - The seed's equalities: every order has exactly one payment (total orders = total payments);
//!   PAID, SHIPPED and DELIVERED orders have a SUCCESS payment whose transaction id is the order's
//!   `paymentId`; CANCELLED orders have a FAILED or REFUNDED one (never a SUCCESS); amounts agree.
//! - No order PENDING, and no outcome left `unsettled`, past the recovery threshold.
//! - Every PAID/SHIPPED/DELIVERED or CANCELLED order has its outcome event in the outbox, sent.
//! - Stock conservation per product: units stocked by admins = on hand + reserved + sold; no
//!   negative stock; no live reservation past its TTL; a paid order's reservation committed (or,
//!   for a moment, still held while the outcome's event reaches the Product service), a
//!   cancelled one's released.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use shop_actors::model::PaymentStatus;
use uuid::Uuid;

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
    /// SUCCESS, FAILED, REFUNDED (and PENDING while a charge is under way), counted apart.
    pub payments_by_status: HashMap<String, i64>,
    /// Orders still in their checkout, younger than the recovery threshold (not violations).
    pub in_flight: i64,
    /// Units per place, over every product.
    pub units: UnitCounts,
    /// Each broken invariant, in words.
    pub violations: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitCounts {
    pub stocked: i64,
    pub on_hand: i64,
    pub reserved: i64,
    pub sold: i64,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// A checkout younger than this may still be running: its PENDING order (or open steps) is
    /// counted in flight, not reported. Zero reports every one.
    pub recovery_threshold: Duration,
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub async fn audit(
    products: &dyn ProductStore,
    payments: &dyn PaymentStore,
    orders: &dyn OrderRepo,
    options: &AuditOptions,
) -> ServiceResult<AuditReport> {
    let orders_found = orders.summaries().await?;
    let events = orders.outcome_events().await?;
    let payments = payments.summaries().await?;
    let negative = products.negative_stock().await?;
    let ledger = products.stock_ledger().await?;
    let reservations = products.reservations().await?;
    let now = crate::time::now();
    let threshold = chrono::Duration::from_std(options.recovery_threshold).unwrap_or(chrono::Duration::MAX);

    let mut report = AuditReport {
        orders: count(orders_found.len()),
        payments: count(payments.len()),
        ..Default::default()
    };
    for o in &orders_found {
        *report.orders_by_status.entry(o.status.clone()).or_default() += 1;
    }
    for p in &payments {
        *report.payments_by_status.entry(p.status.as_str().to_owned()).or_default() += 1;
    }
    let by_order: HashMap<i64, _> = payments.iter().map(|p| (p.order_id, p)).collect();
    let mut sent: HashMap<i64, bool> = HashMap::new();
    for (order_id, was_sent) in events {
        let all = sent.entry(order_id).or_insert(true);
        *all &= was_sent;
    }
    let mut held: HashMap<Uuid, HashSet<&str>> = HashMap::new();
    for r in &reservations {
        held.entry(r.checkout_id).or_default().insert(r.status.as_str());
    }
    let v = &mut report.violations;
    for o in &orders_found {
        let recent = now - o.updated_at < threshold;
        let payment = by_order.get(&o.id);
        let status = o.status.as_str();
        let terminal = matches!(status, "PAID" | "SHIPPED" | "DELIVERED" | "CANCELLED");
        if status == "PENDING" {
            if recent {
                report.in_flight += 1;
                continue;
            }
            v.push(format!("order {} is still PENDING", o.id));
        }
        if o.unsettled {
            if recent {
                report.in_flight += 1;
            } else {
                v.push(format!("order {} is {} with steps after its outcome still open", o.id, status));
            }
        }
        match (status, payment) {
            ("PENDING", _) => {}
            ("PAID" | "SHIPPED" | "DELIVERED", Some(p)) if p.status == PaymentStatus::Success => {
                if o.payment_id != p.transaction_id {
                    v.push(format!(
                        "order {} names transaction {:?}, the payment service has {:?}",
                        o.id, o.payment_id, p.transaction_id
                    ));
                }
            }
            ("CANCELLED", Some(p)) if matches!(p.status, PaymentStatus::Failed | PaymentStatus::Refunded) => {
            }
            ("CANCELLED", Some(p)) if p.status == PaymentStatus::Success => v.push(format!(
                "order {} is CANCELLED but its payment {} is SUCCESS (charged, never refunded)",
                o.id, p.id
            )),
            (_, None) if !o.unsettled || !recent => {
                v.push(format!("order {} is {} but has no payment", o.id, status))
            }
            (_, None) => {}
            (_, Some(_)) if o.unsettled && recent => {}
            (_, Some(p)) => v.push(format!(
                "order {} is {} but its payment {} is {}",
                o.id,
                status,
                p.id,
                p.status.as_str()
            )),
        }
        if let Some(p) = payment
            && p.amount != o.total_amount
        {
            v.push(format!("order {} totals {} but was charged {}", o.id, o.total_amount, p.amount));
        }
        if terminal {
            match sent.get(&o.id) {
                None => {
                    v.push(format!("order {} is {} but its outcome event is not in the outbox", o.id, status))
                }
                Some(false) if !recent => {
                    v.push(format!("order {} is {} but its outcome event was never sent", o.id, status))
                }
                Some(_) => {}
            }
        }
        if let Some(checkout_id) = o.checkout_id
            && terminal
            && !(o.unsettled && recent)
        {
            let statuses = held.get(&checkout_id);
            let only = |s: &str| statuses.is_some_and(|set| set.len() == 1 && set.contains(s));
            if recent && only("RESERVED") {
                // Distributed mode: the Product service ends the reservation when the outcome's
                // event reaches it.
                report.in_flight += 1;
            } else if status == "CANCELLED" {
                if statuses.is_some_and(|set| set.contains("RESERVED") || set.contains("COMMITTED")) {
                    v.push(format!("order {} is CANCELLED but its stock reservation was not released", o.id));
                }
            } else if !only("COMMITTED") {
                v.push(format!(
                    "order {} is {} but its stock reservation is not committed ({statuses:?})",
                    o.id, status
                ));
            }
        }
    }
    let order_ids: HashSet<i64> = orders_found.iter().map(|o| o.id).collect();
    for p in &payments {
        if !order_ids.contains(&p.order_id) {
            v.push(format!("payment {} is for order {}, which does not exist", p.id, p.order_id));
        }
    }
    for id in negative {
        v.push(format!("product {id} has negative stock"));
    }
    for l in &ledger {
        report.units.stocked += l.units_stocked;
        report.units.on_hand += l.stock;
        report.units.reserved += l.reserved;
        report.units.sold += l.sold;
        if l.units_stocked != l.stock + l.reserved + l.sold {
            v.push(format!(
                "product {}: {} units stocked but {} on hand + {} reserved + {} sold",
                l.product_id, l.units_stocked, l.stock, l.reserved, l.sold
            ));
        }
    }
    for r in &reservations {
        if r.status == "RESERVED" && r.expires_at < now {
            v.push(format!("the stock reservation of checkout {} is live past its TTL", r.checkout_id));
        }
    }
    Ok(report)
}
