//! Payment: the mock gateway and the record of one payment per order.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shop_actors::model::{PaymentReceipt, PaymentStatus};
use shop_actors::ports::{ChargeRequest, GatewayError, PaymentGateway};

use crate::error::{ServiceError, ServiceResult};
use crate::money::positive_amount;

mod gateway;

pub use self::gateway::{FAILURE_REASONS, GatewayConfig, GatewayDecision, MockGateway};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: i64,
    pub order_id: i64,
    pub user_id: String,
    pub amount: Decimal,
    pub status: PaymentStatus,
    pub transaction_id: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
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
    pub transaction_id: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

/// What the audit needs of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSummary {
    pub id: i64,
    pub order_id: i64,
    pub status: PaymentStatus,
    pub amount: Decimal,
}

/// Where payments live (the payment database): one per order.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    async fn find_by_order(&self, order_id: i64) -> ServiceResult<Option<Payment>>;
    /// Records the payment; `None` when the order already has one (that one stands).
    async fn insert(&self, payment: NewPayment<'_>) -> ServiceResult<Option<Payment>>;
    async fn summaries(&self) -> ServiceResult<Vec<PaymentSummary>>;
}

#[derive(Clone)]
pub struct PaymentService {
    store: Arc<dyn PaymentStore>,
    gateway: Arc<MockGateway>,
}

impl PaymentService {
    pub fn new(store: Arc<dyn PaymentStore>, gateway: MockGateway) -> Self {
        Self { store, gateway: Arc::new(gateway) }
    }

    /// Takes payment for an order, once: asking again for the same order returns the payment
    /// already recorded and never asks the gateway a second time.
    pub async fn process(&self, order_id: i64, user_id: &str, amount: Decimal) -> ServiceResult<Payment> {
        if order_id < 1 {
            return Err(ServiceError::Invalid("orderId must be a positive integer".into()));
        }
        if user_id.trim().is_empty() || user_id.len() > 100 {
            return Err(ServiceError::Invalid("userId must be 1 to 100 characters".into()));
        }
        let amount = positive_amount("amount", amount)?;
        if let Some(existing) = self.store.find_by_order(order_id).await? {
            return Ok(existing);
        }
        let (status, transaction_id, failure_reason) = match self.gateway.decide().await {
            GatewayDecision::Approved { transaction_id } => {
                (PaymentStatus::Success, Some(transaction_id), None)
            }
            GatewayDecision::Declined { reason } => (PaymentStatus::Failed, None, Some(reason)),
        };
        let new = NewPayment {
            order_id,
            user_id,
            amount,
            status,
            transaction_id: transaction_id.as_deref(),
            failure_reason,
            created_at: crate::time::now(),
        };
        match self.store.insert(new).await? {
            Some(payment) => Ok(payment),
            // A concurrent request for the same order recorded first: its payment is the one.
            None => self
                .store
                .find_by_order(order_id)
                .await?
                .ok_or_else(|| ServiceError::Internal(format!("payment of order {order_id} vanished"))),
        }
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
}
