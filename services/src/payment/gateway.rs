//! The mock payment gateway: approves with a fixed probability after a fixed latency,
//! reproducibly when seeded. Like a real gateway asked with an idempotency key, it answers an
//! order it has already decided as it did the first time (while this process lives), and it
//! gives charges back (refunds).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{ServiceError, ServiceResult};

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

impl GatewayDecision {
    /// The gateway's raw answer, as stored in `payments.gateway_response`.
    pub fn response(&self) -> String {
        let answer = match self {
            GatewayDecision::Approved { transaction_id } => {
                serde_json::json!({ "gateway": "mock", "status": "APPROVED", "transactionId": transaction_id })
            }
            GatewayDecision::Declined { reason } => {
                serde_json::json!({ "gateway": "mock", "status": "DECLINED", "reason": reason })
            }
        };
        answer.to_string()
    }
}

/// Decisions remembered per order; past this many the memory starts again.
const REMEMBERED: usize = 100_000;

/// A payment gateway that approves with a fixed probability after a fixed latency.
pub struct MockGateway {
    success_rate: f64,
    latency: Duration,
    rng: Mutex<StdRng>,
    decided: Mutex<HashMap<i64, GatewayDecision>>,
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
        Ok(Self {
            success_rate: config.success_rate,
            latency: config.latency,
            rng: Mutex::new(rng),
            decided: Mutex::new(HashMap::new()),
        })
    }

    /// Charges for `order_id` (the idempotency key): the same answer every time for one order.
    pub async fn decide(&self, order_id: i64) -> GatewayDecision {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let mut decided = self.decided.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(decision) = decided.get(&order_id) {
            return decision.clone();
        }
        if decided.len() >= REMEMBERED {
            decided.clear();
        }
        let decision = self.draw();
        decided.insert(order_id, decision.clone());
        decision
    }

    /// Gives a charge back; answers the gateway's raw response.
    pub async fn refund(&self, transaction_id: &str) -> String {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        serde_json::json!({ "gateway": "mock", "status": "REFUNDED", "transactionId": transaction_id })
            .to_string()
    }

    fn draw(&self) -> GatewayDecision {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_seeded_gateway_repeats_itself_and_keeps_its_rate() {
        let config = GatewayConfig { success_rate: 0.8, seed: Some(42), latency: Duration::ZERO };
        let (a, b) = (MockGateway::new(&config).expect("gw"), MockGateway::new(&config).expect("gw"));
        let mut approved = 0;
        for order_id in 0..1000 {
            let (x, y) = (a.decide(order_id).await, b.decide(order_id).await);
            assert_eq!(a.decide(order_id).await, x, "an order is answered as the first time");
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
