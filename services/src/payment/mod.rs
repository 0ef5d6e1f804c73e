//! Payment: the mock gateway and the record of one payment per order.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shop_actors::fault;
use shop_actors::model::{PaymentReceipt, PaymentStatus};
use shop_actors::ports::{ChargeRequest, GatewayError, PaymentGateway, VoidRequest};

use crate::error::{ServiceError, ServiceResult};
use crate::history::{HistorySource, HistoryStep, OrderRef, Step};
use crate::money::positive_amount;

mod gateway;

pub use self::gateway::{FAILURE_REASONS, GatewayConfig, GatewayDecision, MockGateway};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: i64,
    pub order_id: i64,
    pub user_id: String,
    pub amount: Decimal,
    pub status: PaymentStatus,
    pub transaction_id: Option<String>,
    /// The gateway's raw answer, as it gave it.
    #[serde(default)]
    pub gateway_response: Option<String>,
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub refunded_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub refund_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the row last changed: the gateway's answer, or the refund.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Payment {
    pub fn receipt(&self) -> PaymentReceipt {
        PaymentReceipt {
            payment_id: self.id,
            status: self.status,
            transaction_id: self.transaction_id.clone(),
            failure_reason: self.failure_reason.clone(),
        }
    }
}

/// A payment row about to be inserted.
#[derive(Debug, Clone)]
pub struct NewPayment<'a> {
    pub order_id: i64,
    pub user_id: &'a str,
    pub amount: Decimal,
    pub status: PaymentStatus,
    pub failure_reason: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

/// A payment's move from one status to the next; `None` fields keep what is stored.
#[derive(Debug, Clone)]
pub struct PaymentChange {
    pub status: PaymentStatus,
    pub transaction_id: Option<String>,
    pub gateway_response: Option<String>,
    pub failure_reason: Option<String>,
    pub refunded_at: Option<DateTime<Utc>>,
    pub refund_reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl PaymentChange {
    /// The payment as the change leaves it: what the change names replaces what `current` holds,
    /// as the update's `COALESCE`s do. Every change moves the status on along PENDING → SUCCESS
    /// or FAILED → REFUNDED and never back, so a row whose status is still `current`'s holds
    /// what `current` read: a store that cannot return the updated row computes it instead of
    /// reading it back.
    pub fn applied_to(&self, current: &Payment) -> Payment {
        Payment {
            status: self.status,
            transaction_id: self.transaction_id.clone().or_else(|| current.transaction_id.clone()),
            gateway_response: self.gateway_response.clone().or_else(|| current.gateway_response.clone()),
            failure_reason: self.failure_reason.clone().or_else(|| current.failure_reason.clone()),
            refunded_at: self.refunded_at.or(current.refunded_at),
            refund_reason: self.refund_reason.clone().or_else(|| current.refund_reason.clone()),
            updated_at: Some(self.at),
            ..current.clone()
        }
    }

    fn to(status: PaymentStatus) -> Self {
        Self {
            status,
            transaction_id: None,
            gateway_response: None,
            failure_reason: None,
            refunded_at: None,
            refund_reason: None,
            at: crate::time::now(),
        }
    }
}

/// What the audit needs of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSummary {
    pub id: i64,
    pub order_id: i64,
    pub status: PaymentStatus,
    pub amount: Decimal,
    pub transaction_id: Option<String>,
}

/// Where payments live (the payment database): one per order.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    async fn find_by_order(&self, order_id: i64) -> ServiceResult<Option<Payment>>;
    /// Records the payment; `None` when the order already has one (that one stands).
    async fn insert(&self, payment: NewPayment<'_>) -> ServiceResult<Option<Payment>>;
    /// Moves the order's payment on if it is still as `current` read it (compare-and-set on its
    /// status), answering it as stored; `None` if it is not (someone else moved it first).
    async fn update(&self, current: &Payment, change: PaymentChange) -> ServiceResult<Option<Payment>>;
    async fn summaries(&self) -> ServiceResult<Vec<PaymentSummary>>;
}

/// Why a charge that went through is given back when its order was cancelled first.
pub const CHARGED_AFTER_CANCEL: &str = "Charged after the order was cancelled";

#[derive(Clone)]
pub struct PaymentService {
    store: Arc<dyn PaymentStore>,
    gateway: Arc<MockGateway>,
}

impl PaymentService {
    pub fn new(store: Arc<dyn PaymentStore>, gateway: MockGateway) -> Self {
        Self { store, gateway: Arc::new(gateway) }
    }

    /// Takes payment for an order, once, as the seed's steps: the payment saved PENDING, the
    /// gateway asked, the payment updated to SUCCESS or FAILED. Asking again for the same order
    /// returns the payment recorded; one left PENDING (the gateway's answer was never stored)
    /// asks the gateway again, which answers an order it has seen as it did the first time.
    pub async fn process(&self, order_id: i64, user_id: &str, amount: Decimal) -> ServiceResult<Payment> {
        if order_id < 1 {
            return Err(ServiceError::Invalid("orderId must be a positive integer".into()));
        }
        if user_id.trim().is_empty() || user_id.len() > 100 {
            return Err(ServiceError::Invalid("userId must be 1 to 100 characters".into()));
        }
        let amount = positive_amount("amount", amount)?;
        // Inserted first, and read only when the order has a payment already (a retry, or a
        // concurrent request that recorded first: its payment is the one).
        let new = NewPayment {
            order_id,
            user_id,
            amount,
            status: PaymentStatus::Pending,
            failure_reason: None,
            created_at: crate::time::now(),
        };
        let payment = match self.store.insert(new).await? {
            Some(payment) => payment,
            None => self.stored(order_id).await?,
        };
        if payment.status != PaymentStatus::Pending {
            return Ok(payment);
        }
        fault::point("after-payment-pending");
        let decision = self.gateway.decide(order_id).await;
        fault::point("after-gateway");
        let change = match &decision {
            GatewayDecision::Approved { transaction_id } => PaymentChange {
                transaction_id: Some(transaction_id.clone()),
                gateway_response: Some(decision.response()),
                ..PaymentChange::to(PaymentStatus::Success)
            },
            GatewayDecision::Declined { reason } => PaymentChange {
                gateway_response: Some(decision.response()),
                failure_reason: Some((*reason).to_owned()),
                ..PaymentChange::to(PaymentStatus::Failed)
            },
        };
        if let Some(done) = self.store.update(&payment, change).await? {
            return Ok(done);
        }
        // Someone else moved it first: a concurrent request (same answer), or a void because the
        // order was cancelled meanwhile, in which case an approval is given back.
        let current = self.stored(order_id).await?;
        match decision {
            GatewayDecision::Approved { transaction_id } if current.status == PaymentStatus::Failed => {
                self.refund(current, Some(transaction_id), CHARGED_AFTER_CANCEL).await
            }
            _ => Ok(current),
        }
    }

    /// Closes the payment side of a cancelled order, idempotently: no payment, or one still
    /// PENDING, becomes FAILED with `reason` (so that every order has its payment); a SUCCESS is
    /// refunded through the gateway (REFUNDED, with the refund's time and reason); FAILED and
    /// REFUNDED stay as they are.
    pub async fn void(
        &self,
        order_id: i64,
        user_id: &str,
        amount: Decimal,
        reason: &str,
    ) -> ServiceResult<Payment> {
        if order_id < 1 {
            return Err(ServiceError::Invalid("orderId must be a positive integer".into()));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 255 {
            return Err(ServiceError::Invalid("reason must be 1 to 255 characters".into()));
        }
        // Each pass either ends or loses a race to another writer, who moved the payment on.
        for _ in 0..3 {
            let Some(payment) = self.store.find_by_order(order_id).await? else {
                let new = NewPayment {
                    order_id,
                    user_id,
                    amount: positive_amount("amount", amount)?,
                    status: PaymentStatus::Failed,
                    failure_reason: Some(reason),
                    created_at: crate::time::now(),
                };
                match self.store.insert(new).await? {
                    Some(payment) => return Ok(payment),
                    None => continue,
                }
            };
            match payment.status {
                PaymentStatus::Failed | PaymentStatus::Refunded => return Ok(payment),
                PaymentStatus::Success => return self.refund(payment, None, reason).await,
                PaymentStatus::Pending => {
                    let change = PaymentChange {
                        failure_reason: Some(reason.to_owned()),
                        ..PaymentChange::to(PaymentStatus::Failed)
                    };
                    if let Some(done) = self.store.update(&payment, change).await? {
                        return Ok(done);
                    }
                }
            }
        }
        Err(ServiceError::Busy(format!("payment of order {order_id} keeps changing; try again")))
    }

    /// Gives a charge back through the gateway and records it: REFUNDED.
    async fn refund(
        &self,
        payment: Payment,
        charged: Option<String>,
        reason: &str,
    ) -> ServiceResult<Payment> {
        let transaction_id = charged.clone().or(payment.transaction_id.clone()).unwrap_or_default();
        let refund = self.gateway.refund(&transaction_id).await;
        let change = PaymentChange {
            transaction_id: charged,
            gateway_response: Some(refund),
            refunded_at: Some(crate::time::now()),
            refund_reason: Some(reason.to_owned()),
            ..PaymentChange::to(PaymentStatus::Refunded)
        };
        match self.store.update(&payment, change).await? {
            Some(done) => {
                tracing::info!(order_id = payment.order_id, %transaction_id, reason, "payment refunded");
                Ok(done)
            }
            // Refunded by a concurrent void: the gateway refunds one transaction once.
            None => self.stored(payment.order_id).await,
        }
    }

    async fn stored(&self, order_id: i64) -> ServiceResult<Payment> {
        self.store
            .find_by_order(order_id)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("payment of order {order_id} vanished")))
    }

    pub async fn find_by_order(&self, order_id: i64) -> ServiceResult<Option<Payment>> {
        self.store.find_by_order(order_id).await
    }
}

/// In embedded mode the saga charges through the Payment service directly.
#[async_trait]
impl PaymentGateway for PaymentService {
    async fn charge(&self, request: ChargeRequest) -> Result<PaymentReceipt, GatewayError> {
        self.process(request.order_id, &request.username, request.amount)
            .await
            .map(|p| p.receipt())
            .map_err(|e| GatewayError::Unavailable(e.to_string()))
    }

    async fn void(&self, r: VoidRequest) -> Result<PaymentReceipt, GatewayError> {
        PaymentService::void(self, r.order_id, &r.username, r.amount, &r.reason)
            .await
            .map(|p| p.receipt())
            .map_err(|e| GatewayError::Unavailable(e.to_string()))
    }

    async fn find(&self, order_id: i64) -> Result<Option<PaymentReceipt>, GatewayError> {
        self.find_by_order(order_id)
            .await
            .map(|p| p.map(|p| p.receipt()))
            .map_err(|e| GatewayError::Unavailable(e.to_string()))
    }
}

/// The payment steps of an order: its payment row.
#[async_trait]
impl HistorySource for PaymentService {
    fn name(&self) -> &'static str {
        "payment"
    }

    async fn steps(&self, order: &OrderRef) -> ServiceResult<Vec<HistoryStep>> {
        Ok(self.store.find_by_order(order.order_id).await?.map(|p| history_steps(&p)).unwrap_or_default())
    }
}

/// The payment steps of an order's history, from its payment row.
fn history_steps(p: &Payment) -> Vec<HistoryStep> {
    let payment = |step, at, detail| HistoryStep::new(step, at, "payment", detail);
    let mut steps = vec![payment(Step::PaymentAsked, p.created_at, Some(format!("{} due", p.amount)))];
    let decided = p.updated_at.filter(|_| p.status != PaymentStatus::Refunded);
    match (p.status, decided) {
        (PaymentStatus::Success, Some(at)) => {
            steps.push(payment(Step::PaymentApproved, at, p.transaction_id.clone()))
        }
        (PaymentStatus::Failed, Some(at)) => {
            steps.push(payment(Step::PaymentDeclined, at, p.failure_reason.clone()))
        }
        _ => {}
    }
    if let Some(at) = p.refunded_at {
        let detail = match (&p.transaction_id, &p.refund_reason) {
            (Some(txn), Some(reason)) => Some(format!("{txn}: {reason}")),
            (txn, reason) => txn.clone().or(reason.clone()),
        };
        steps.push(payment(Step::Refunded, at, detail));
    }
    steps
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use rust_decimal::Decimal;

    use super::*;
    use crate::history::{ReservationLine, in_order, reservation_steps};

    #[test]
    fn a_refunded_payment_shows_the_ask_and_the_refund_and_steps_sort_by_time() {
        let t0 = Utc::now();
        let p = Payment {
            id: 1,
            order_id: 7,
            user_id: "ann".into(),
            amount: Decimal::new(1999, 2),
            status: PaymentStatus::Refunded,
            transaction_id: Some("TXN_1".into()),
            gateway_response: None,
            failure_reason: None,
            refunded_at: Some(t0 + Duration::seconds(2)),
            refund_reason: Some("order cancelled".into()),
            created_at: t0,
            updated_at: Some(t0 + Duration::seconds(2)),
        };
        let steps: Vec<Step> = history_steps(&p).iter().map(|s| s.step).collect();
        assert_eq!(steps, [Step::PaymentAsked, Step::Refunded]);
        let declined = Payment {
            status: PaymentStatus::Failed,
            refunded_at: None,
            failure_reason: Some("Insufficient funds".into()),
            ..p
        };
        let steps = history_steps(&declined);
        assert_eq!(steps[1].step, Step::PaymentDeclined);
        assert_eq!(steps[1].detail.as_deref(), Some("Insufficient funds"));

        let mut later = steps.clone();
        let line = |quantity, created: i64| ReservationLine {
            status: "RELEASED".into(),
            quantity,
            created_at: t0 + Duration::seconds(created),
            updated_at: t0 + Duration::seconds(3),
        };
        let stock = reservation_steps(&[line(1, -1), line(2, 0)]);
        assert_eq!(stock[0].detail.as_deref(), Some("3 units on 2 lines"));
        later.extend(stock);
        let order: Vec<Step> = in_order(later).iter().map(|s| s.step).collect();
        assert_eq!(
            order,
            [Step::StockReserved, Step::PaymentAsked, Step::PaymentDeclined, Step::StockReleased]
        );
    }
}
