//! A fixed pool of payment actors in front of the [`PaymentGateway`].
//!
//! Each worker handles one charge at a time. The pool hands out permits, as many as its workers
//! can hold (one running and `queue_per_worker` waiting each); a checkout takes a permit before
//! it creates its order and keeps it to the end. When no permit comes within
//! [`PaymentPoolConfig::acquire_timeout`] the checkout is refused as busy, so a burst is pushed
//! back to the clients instead of piling up in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::deadline;
use crate::model::PaymentReceipt;
use crate::ports::{ChargeRequest, GatewayError, PaymentGateway};
use crate::runtime::{ActorRuntime, placement};

#[derive(Debug, Clone)]
pub struct PaymentPoolConfig {
    pub workers: usize,
    pub queue_per_worker: usize,
    /// How long a checkout waits for room in the pool before it is refused as busy.
    pub acquire_timeout: Duration,
    /// How long one charge may take, queueing included, unless the caller runs under a
    /// deadline (a checkout's), which then bounds it.
    pub call_timeout: Duration,
}

impl Default for PaymentPoolConfig {
    fn default() -> Self {
        Self {
            workers: 16,
            queue_per_worker: 16,
            acquire_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("the payment pool is saturated")]
    Saturated,
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// A charge, and the span of the checkout that asks (its logs and calls carry that trace).
#[derive(Clone)]
struct Charge(ChargeRequest, tracing::Span);

impl Message for Charge {
    type Result = Result<PaymentReceipt, GatewayError>;
}

pub struct PaymentWorker {
    gateway: Arc<dyn PaymentGateway>,
    mailbox: usize,
}

impl Actor for PaymentWorker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Handler<Charge> for PaymentWorker {
    type Result = AtomicResponse<Self, Result<PaymentReceipt, GatewayError>>;

    fn handle(&mut self, Charge(req, span): Charge, _ctx: &mut Self::Context) -> Self::Result {
        let gateway = self.gateway.clone();
        let charge = tracing::Instrument::instrument(async move { gateway.charge(req).await }, span);
        AtomicResponse::new(Box::pin(charge.into_actor(self)))
    }
}

/// Room for one checkout in the payment pool, held from before the order exists to the end.
pub struct PoolPermit(#[allow(dead_code)] OwnedSemaphorePermit);

#[derive(Clone)]
pub struct PaymentPool {
    /// Workers by arbiter: `workers[a]` all run on arbiter `a`.
    workers: Arc<[Vec<Addr<PaymentWorker>>]>,
    next: Arc<AtomicUsize>,
    permits: Arc<Semaphore>,
    config: PaymentPoolConfig,
}

impl PaymentPool {
    /// Starts the workers, spread evenly over the runtime's arbiters.
    pub fn start(
        runtime: &ActorRuntime,
        gateway: Arc<dyn PaymentGateway>,
        config: PaymentPoolConfig,
    ) -> Self {
        let count = config.workers.max(1);
        let mailbox = config.queue_per_worker.max(1);
        let arbiters = runtime.arbiters();
        let mut workers: Vec<Vec<Addr<PaymentWorker>>> = vec![Vec::new(); arbiters.len().min(count)];
        for i in 0..count {
            let gateway = gateway.clone();
            let a = i % workers.len();
            workers[a].push(PaymentWorker::start_in_arbiter(&arbiters[a], move |_| PaymentWorker {
                gateway,
                mailbox,
            }));
        }
        Self {
            workers: workers.into(),
            next: Arc::new(AtomicUsize::new(0)),
            permits: Arc::new(Semaphore::new(count * (1 + mailbox))),
            config,
        }
    }

    /// Waits up to the acquire timeout for room in the pool.
    pub async fn permit(&self) -> Result<PoolPermit, PoolError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(PoolPermit(permit));
        }
        match tokio::time::timeout(self.config.acquire_timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(PoolPermit(permit)),
            _ => Err(PoolError::Saturated),
        }
    }

    /// Charges through the next worker near the user. The permit proves the caller has room in the pool.
    pub async fn charge(
        &self,
        _permit: &PoolPermit,
        request: ChargeRequest,
    ) -> Result<PaymentReceipt, PoolError> {
        // A worker on the arbiter of the user's cart and checkout, so the charge stays on one thread.
        let local = &self.workers[placement(request.username.as_str(), self.workers.len())];
        let worker = &local[self.next.fetch_add(1, Ordering::Relaxed) % local.len()];
        let sent = worker.send(Charge(request, tracing::Span::current()));
        // Under a deadline (the checkout saga's) that deadline bounds the charge: no timer here.
        let answer =
            if deadline::bounded() { sent.await } else { sent.timeout(self.config.call_timeout).await };
        match answer {
            Ok(answer) => Ok(answer?),
            Err(e) => Err(GatewayError::Unavailable(format!("payment worker: {e}")).into()),
        }
    }

    /// Checkouts holding a place now: charging (at most one per worker), and waiting for a
    /// worker.
    pub fn in_use(&self) -> (usize, usize) {
        let workers = self.workers.iter().map(Vec::len).sum::<usize>();
        let held = (workers * (1 + self.config.queue_per_worker.max(1))).saturating_sub(self.available());
        (held.min(workers), held.saturating_sub(workers))
    }

    /// Room left in the pool right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}
