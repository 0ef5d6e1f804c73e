//! Payment: the mock gateway and the record of one payment per order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::Serialize;
use shop_actors::model::{PaymentReceipt, PaymentStatus};
use shop_actors::ports::{ChargeRequest, GatewayError, PaymentGateway};

use crate::error::{ServiceError, ServiceResult};
use crate::money::positive_amount;
use crate::store::{NewPayment, PaymentStore};

/// The reasons the mock gateway gives when it declines.
pub const FAILURE_REASONS: [&str; 5] = [
    "Insufficient funds",
    "Card declined",
    "Invalid card details",
    "Transaction limit exceeded",
    "Gateway timeout",
];

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Probability that a charge succeeds, in [0, 1].
    pub success_rate: f64,
    /// Makes the sequence of outcomes reproducible.
    pub seed: Option<u64>,
    pub latency: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self { success_rate: 0.8, seed: None, latency: Duration::ZERO }
    }
}

/// The outcome the mock gateway decides for one charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayDecision {
    Approved { transaction_id: String },
    Declined { reason: &'static str },
}

/// A payment gateway that approves with a fixed probability after a fixed latency.
pub struct MockGateway {
    success_rate: f64,
    latency: Duration,
    rng: Mutex<StdRng>,
}

impl MockGateway {
    pub fn new(config: &GatewayConfig) -> ServiceResult<Self> {
        if !(0.0..=1.0).contains(&config.success_rate) {
            return Err(ServiceError::Invalid(format!(
                "payment success rate must be between 0 and 1 (got {})",
                config.success_rate
            )));
        }
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(Self { success_rate: config.success_rate, latency: config.latency, rng: Mutex::new(rng) })
    }

    pub async fn decide(&self) -> GatewayDecision {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let mut rng = match self.rng.lock() {
            Ok(rng) => rng,
            Err(poisoned) => poisoned.into_inner(),
        };
        if rng.random_bool(self.success_rate) {
            const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            let code: String = (0..10).map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())])).collect();
            GatewayDecision::Approved { transaction_id: format!("TXN_{code}") }
        } else {
            GatewayDecision::Declined { reason: FAILURE_REASONS[rng.random_range(0..FAILURE_REASONS.len())] }
        }
    }
}

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
            created_at: crate::db::now(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_seeded_gateway_repeats_itself_and_keeps_its_rate() {
        let config = GatewayConfig { success_rate: 0.8, seed: Some(42), latency: Duration::ZERO };
        let (a, b) = (MockGateway::new(&config).expect("gw"), MockGateway::new(&config).expect("gw"));
        let mut approved = 0;
        for _ in 0..1000 {
            let (x, y) = (a.decide().await, b.decide().await);
            assert_eq!(x, y);
            match x {
                GatewayDecision::Approved { transaction_id } => {
                    approved += 1;
                    assert!(
                        transaction_id.starts_with("TXN_") && transaction_id.len() == 14,
                        "{transaction_id}"
                    );
                }
                GatewayDecision::Declined { reason } => assert!(FAILURE_REASONS.contains(&reason)),
            }
        }
        assert!((750..=850).contains(&approved), "{approved} of 1000 approved at rate 0.8");
        assert!(MockGateway::new(&GatewayConfig { success_rate: 1.5, ..config }).is_err());
    }
}
