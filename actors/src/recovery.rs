//! Saga recovery: checkouts that stopped half-way are driven to an end from what is stored.
//!
//! A checkout can stop anywhere: the process killed between two steps, a step's peer unreachable.
//! What it leaves behind is always one of two things, because every step's outcome is stored
//! before the next begins and every step is idempotent:
//! - an order still PENDING: its payment is looked up (Payment keeps one per order). SUCCESS
//!   completes the order (reservation committed, PAID with the transaction id); FAILED or
//!   REFUNDED compensates it (reservation released, CANCELLED with the reason); no payment, or
//!   one still PENDING, is voided (FAILED, or REFUNDED if it had charged) and the order
//!   compensated as interrupted;
//! - an order with its outcome but `unsettled` (a step after the outcome could not be done): PAID
//!   commits the reservation again; CANCELLED voids the payment side and releases the
//!   reservation again; then the order is marked settled.
//!
//! The outcome is stored with its event (the outbox), so the cart is cleared (PAID) or given back
//! (CANCELLED) as after any checkout.
//!
//! Only checkouts last changed more than `threshold` ago are touched, so a live checkout is never
//! raced. With several Order instances on one database each order is claimed first (a lease
//! stored with the order, `lease` long): one instance resumes it, the others skip it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::model::{Order, OrderStatus, PaymentReceipt, PaymentStatus};
use crate::order::{OrderError, Orders, Transition};
use crate::outbox::Outbox;
use crate::ports::{GatewayError, PaymentGateway, StockError, StockPort, VoidRequest};
use crate::runtime::ActorRuntime;

/// The reason a checkout interrupted before its payment was known is cancelled with.
pub const CHECKOUT_INTERRUPTED: &str = "Checkout interrupted before payment completed";

#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// Run rounds at all (at start-up, then every `interval`).
    pub enabled: bool,
    /// A checkout last changed longer ago than this is stuck.
    pub threshold: Duration,
    pub interval: Duration,
    /// Stuck checkouts taken per round.
    pub batch: usize,
    /// How long a claimed order stays this instance's to resume.
    pub lease: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: Duration::from_secs(90),
            interval: Duration::from_secs(10),
            batch: 100,
            lease: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryStats {
    pub rounds: u64,
    /// Checkouts this instance drove to an end.
    pub recovered: u64,
    /// Of those, payments that had charged and were refunded.
    pub refunded: u64,
}

#[derive(Default)]
struct Counters {
    rounds: AtomicU64,
    recovered: AtomicU64,
    refunded: AtomicU64,
}

struct Deps {
    orders: Orders,
    gateway: Arc<dyn PaymentGateway>,
    stock: Arc<dyn StockPort>,
    outbox: Outbox,
    config: RecoveryConfig,
    owner: Uuid,
    counters: Counters,
}

/// The recovery of this Order instance. Cheap to clone.
#[derive(Clone)]
pub struct Recovery {
    deps: Arc<Deps>,
}

/// What recovering one order came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resumed {
    Ended {
        refunded: bool,
    },
    /// Another instance holds it, or a peer is unreachable: next round.
    Skipped,
}

impl Recovery {
    pub(crate) fn start(
        runtime: &ActorRuntime,
        orders: Orders,
        gateway: Arc<dyn PaymentGateway>,
        stock: Arc<dyn StockPort>,
        outbox: Outbox,
        config: RecoveryConfig,
    ) -> Self {
        let deps = Arc::new(Deps {
            orders,
            gateway,
            stock,
            outbox,
            config,
            owner: Uuid::new_v4(),
            counters: Counters::default(),
        });
        let recovery = Self { deps };
        if recovery.deps.config.enabled {
            let r = recovery.clone();
            runtime.arbiter_for("saga-recovery").spawn(async move {
                loop {
                    if let Err(e) = r.run_once().await {
                        tracing::warn!(error = %e, "saga recovery round failed; next round will retry");
                    }
                    tokio::time::sleep(r.deps.config.interval).await;
                }
            });
        }
        recovery
    }

    /// One round: every checkout stuck past the threshold, driven to an end. Answers how many
    /// this round ended.
    pub async fn run_once(&self) -> Result<usize, OrderError> {
        let d = &self.deps;
        d.counters.rounds.fetch_add(1, Ordering::Relaxed);
        let threshold = chrono::Duration::from_std(d.config.threshold).unwrap_or(chrono::Duration::MAX);
        let stuck = d.orders.unfinished(Utc::now() - threshold, d.config.batch.max(1)).await?;
        let mut ended = 0;
        for order in stuck {
            match self.resume(&order).await {
                Ok(Resumed::Ended { refunded }) => {
                    ended += 1;
                    d.counters.recovered.fetch_add(1, Ordering::Relaxed);
                    if refunded {
                        d.counters.refunded.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!(order_id = order.id, refunded, "stuck checkout recovered");
                }
                Ok(Resumed::Skipped) => {}
                Err(e) => tracing::warn!(order_id = order.id, error = %e, "stuck checkout not recovered yet"),
            }
        }
        if ended > 0 {
            d.outbox.kick();
        }
        Ok(ended)
    }

    pub fn stats(&self) -> RecoveryStats {
        let c = &self.deps.counters;
        RecoveryStats {
            rounds: c.rounds.load(Ordering::Relaxed),
            recovered: c.recovered.load(Ordering::Relaxed),
            refunded: c.refunded.load(Ordering::Relaxed),
        }
    }

    async fn resume(&self, order: &Order) -> Result<Resumed, RecoveryError> {
        let d = &self.deps;
        let lease = chrono::Duration::from_std(d.config.lease).unwrap_or(chrono::Duration::MAX);
        if !d.orders.claim_recovery(order.id, d.owner, Utc::now() + lease).await? {
            return Ok(Resumed::Skipped);
        }
        // What was claimed may have moved on since it was listed.
        let order = d.orders.get(order.id).await?;
        match order.status {
            OrderStatus::Pending => self.end_pending(&order).await,
            _ if order.unsettled => self.settle(&order).await,
            _ => Ok(Resumed::Skipped),
        }
    }

    async fn end_pending(&self, order: &Order) -> Result<Resumed, RecoveryError> {
        let d = &self.deps;
        let receipt = d.gateway.find(order.id).await?;
        let (receipt, reason) = match receipt {
            Some(r) if r.status == PaymentStatus::Success => {
                let committed = self.stock(order, true).await;
                let change = Transition {
                    payment_id: r.transaction_id.clone(),
                    checkout_id: order.checkout_id,
                    unsettled: !committed,
                    ..Transition::to(OrderStatus::Paid)
                };
                d.orders.transition(order.id, change).await?;
                return Ok(Resumed::Ended { refunded: false });
            }
            Some(r) if r.status.is_final() => {
                let fallback = if r.status == PaymentStatus::Refunded {
                    CHECKOUT_INTERRUPTED
                } else {
                    "Payment declined"
                };
                let reason = r.failure_reason.clone().unwrap_or_else(|| fallback.to_owned());
                (r, reason)
            }
            // No payment, or one whose gateway answer was never stored: closed as not taken (or
            // refunded, if it had charged after all).
            _ => (self.void(order, CHECKOUT_INTERRUPTED).await?, CHECKOUT_INTERRUPTED.to_owned()),
        };
        let released = self.stock(order, false).await;
        let change = Transition {
            failure_reason: Some(reason),
            checkout_id: order.checkout_id,
            unsettled: !released,
            ..Transition::to(OrderStatus::Cancelled)
        };
        d.orders.transition(order.id, change).await?;
        Ok(Resumed::Ended { refunded: receipt.status == PaymentStatus::Refunded })
    }

    /// The steps after an outcome, done again (each is idempotent), then the order marked settled.
    async fn settle(&self, order: &Order) -> Result<Resumed, RecoveryError> {
        let mut refunded = false;
        let done = if order.status == OrderStatus::Cancelled {
            let reason = order.failure_reason.as_deref().unwrap_or(CHECKOUT_INTERRUPTED);
            refunded = self.void(order, reason).await?.status == PaymentStatus::Refunded;
            self.stock(order, false).await
        } else {
            self.stock(order, true).await
        };
        if !done {
            return Ok(Resumed::Skipped);
        }
        self.deps.orders.mark_settled(order.id).await?;
        Ok(Resumed::Ended { refunded })
    }

    async fn void(&self, order: &Order, reason: &str) -> Result<PaymentReceipt, RecoveryError> {
        let request = VoidRequest {
            order_id: order.id,
            username: order.username.clone(),
            amount: order.total_amount,
            reason: reason.to_owned(),
        };
        Ok(self.deps.gateway.void(request).await?)
    }

    /// Commits (`sold`) or releases the order's reservation; whether that is done. An order from
    /// before reservations existed has none.
    async fn stock(&self, order: &Order, sold: bool) -> bool {
        let Some(checkout_id) = order.checkout_id else { return true };
        let done: Result<(), StockError> = if sold {
            self.deps.stock.commit(checkout_id).await
        } else {
            self.deps.stock.release(checkout_id).await
        };
        match done {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(order_id = order.id, error = %e, "reservation not settled yet");
                false
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RecoveryError {
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Payment(#[from] GatewayError),
}
