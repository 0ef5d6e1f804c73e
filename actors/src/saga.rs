//! The checkout saga: an orchestrator that turns a cart into a PAID or CANCELLED order.
//!
//! Steps, each finished (and its outcome stored) before the next starts:
//! 1. with an idempotency key, return the order that key already made;
//! 2. pass the payment circuit breaker ([`BreakerConfig`]): while Payment is unreachable new
//!    checkouts are refused at once, before anything is stored; then take room in the payment
//!    pool (or answer busy);
//! 3. lease the cart from the Cart side ([`CartPort`]): no second checkout of it meanwhile;
//! 4. reserve every line in the stock ([`StockPort`]), all or nothing, keyed by the checkout: a
//!    line that cannot be covered ends the checkout (no order, no payment) and gives the cart back;
//! 5. create the order PENDING (naming the checkout), with its `ORDER_CREATED` event in the outbox;
//! 6. charge through the payment pool ([`PaymentGateway`], idempotent per order, retried); the
//!    Payment side stores the payment PENDING before it asks the gateway;
//! 7. PAID: commit the reservation. CANCELLED: release it (with `stock_follows_events`, the
//!    stock side does both when the outcome's event reaches it), and when the charge could not
//!    be taken void the payment side (FAILED if it never charged, REFUNDED if a late charge went
//!    through);
//! 8. store the outcome (PAID with the gateway's transaction id, or CANCELLED with the reason)
//!    together with its `ORDER_COMPLETED` or `ORDER_CANCELLED` event (the outbox); give the cart
//!    back on CANCELLED. The relay publishes the event, and the Cart side takes the bought items
//!    out of the cart when it sees `ORDER_COMPLETED` (or when the user's next checkout leases the
//!    cart, if that comes first: see `Completed`). With `await_events` the saga answers only
//!    once the relay has published (embedded mode: the cart is already cleared); without, it
//!    only kicks the relay, so checkouts keep answering while the broker is away.
//!
//! Steps 1 and 3 to 6 share one deadline (`SagaConfig::deadline`, one timer for all their
//! messages). A lease that does not come in time ends the checkout (a lease granted later lapses
//! after its TTL); an order that does not come in time ends it and gives the stock and the cart
//! back; a charge that does not come in time cancels the order as unpaid. Compensations run after
//! the deadline, each call with its own timeout (`follow_up_timeout`). A step of 7 that cannot be
//! done now leaves the order `unsettled`; a checkout that stops half-way (a crash) leaves it
//! PENDING: [`crate::Recovery`] ends both from what is stored.
//!
//! [`CheckoutSaga`] is the supervisor actor: it starts each checkout as its own task, so checkouts
//! of different carts run concurrently while the pool bounds how many reach payment at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::breaker::{Admit, Breaker, BreakerConfig};
use crate::deadline::{Deadline, Expired};
use crate::durations::{DurationSnapshot, Durations};
use crate::fault;
use crate::model::{LineQuantity, NewOrder, Order, OrderItem, OrderStatus, PaymentReceipt, PaymentStatus};
use crate::order::{OrderError, Orders, Transition};
use crate::outbox::Outbox;
use crate::payment_pool::{PaymentPool, PoolError, PoolPermit};
use crate::ports::{
    CartPort, CartPortError, ChargeRequest, CheckoutLease, CompletedCheckout, GatewayError, PaymentGateway,
    Shortage, StockError, StockPort, StoreError, VoidRequest,
};
use crate::registry::RegistryError;
use crate::retry::{Backoff, Retry};
use crate::runtime::{ActorRuntime, placement};

/// The reason an order gets when payment could not be taken at all.
pub const PAYMENT_UNAVAILABLE: &str = "Payment service unavailable";

#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// Charges asked for at most this many times when the payment side does not answer.
    pub charge_attempts: u32,
    pub retry_backoff: Duration,
    /// Checkout requests waiting to be started; senders wait (up to `request_timeout`) beyond it.
    pub mailbox_capacity: usize,
    /// How long a caller waits for a whole checkout.
    pub request_timeout: Duration,
    /// How long a checkout's forward steps (lease, order, charge, outcome) may take in all, one
    /// timer for all of them (one deadline); past it the checkout compensates. Keep it below
    /// `request_timeout`, so that the caller hears how the checkout ended.
    pub deadline: Duration,
    /// Wait (up to `event_timeout`) for the outcome event to be published before answering.
    pub await_events: bool,
    pub event_timeout: Duration,
    /// How long each call of a step after the outcome (stock, void) may take; each is asked up
    /// to `charge_attempts` times, then left to recovery.
    pub follow_up_timeout: Duration,
    /// The stock side ends a checkout's reservation itself when it sees the outcome's event
    /// (`ORDER_COMPLETED` commits it, `ORDER_CANCELLED` releases it): the saga does not ask it
    /// after the outcome. Distributed mode saves the request; the outbox delivers the event at
    /// least once, and the reservation's TTL outlasts its delivery.
    pub stock_follows_events: bool,
    pub breaker: BreakerConfig,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            charge_attempts: 3,
            retry_backoff: Duration::from_millis(50),
            mailbox_capacity: 1024,
            request_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(30),
            await_events: true,
            event_timeout: Duration::from_secs(5),
            follow_up_timeout: Duration::from_secs(5),
            stock_follows_events: false,
            breaker: BreakerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckoutError {
    #[error("the cart is empty")]
    EmptyCart,
    #[error("a checkout of this cart is already in progress")]
    InProgress,
    #[error("too many checkouts in progress; try again shortly")]
    Busy,
    /// A line of the cart cannot be covered by the stock: nothing was ordered or charged.
    #[error("{}", StockError::Insufficient(.0.clone()))]
    OutOfStock(Shortage),
    #[error("product {0} in the cart no longer exists; remove it and check out again")]
    UnknownProduct(i64),
    /// The circuit breaker is open: nothing was ordered or charged.
    #[error("payment is unavailable right now; try again in {} s", .retry_after.as_secs().max(1))]
    PaymentUnavailable { retry_after: Duration },
    #[error("checkout could not finish: {0}")]
    Unavailable(String),
}

/// Ask the saga to check out `username`'s cart.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub username: String,
    pub idempotency_key: Option<String>,
    /// The span of whoever asked (an HTTP request): the saga's steps run in it, so that their
    /// logs and calls carry its trace.
    pub span: tracing::Span,
}

impl Message for Checkout {
    type Result = Result<Order, CheckoutError>;
}

/// Counters of finished checkouts.
#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    paid: AtomicU64,
    cancelled: AtomicU64,
    replayed: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    /// How long the checkouts that made an order took, from the request to the answer.
    durations: Durations,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SagaStats {
    pub started: u64,
    pub paid: u64,
    pub cancelled: u64,
    /// Answered with the order an earlier request with the same idempotency key made.
    pub replayed: u64,
    /// Refused before any order was made: empty cart, out of stock, busy, payment unavailable.
    pub refused: u64,
    /// Ended without an answer (a service was away); recovery ends the order if one was made.
    pub failed: u64,
}

/// Whether a checkout made the order it answers with, or found it made by an earlier request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Made,
    Replayed,
}

/// What the saga talks to.
pub(crate) struct SagaPorts {
    pub carts: Arc<dyn CartPort>,
    pub stock: Arc<dyn StockPort>,
    /// Payment directly, for what does not go through the pool (voids).
    pub gateway: Arc<dyn PaymentGateway>,
    pub orders: Orders,
    pub pool: PaymentPool,
    pub outbox: Outbox,
}

struct SagaDeps {
    carts: Arc<dyn CartPort>,
    stock: Arc<dyn StockPort>,
    gateway: Arc<dyn PaymentGateway>,
    orders: Orders,
    pool: PaymentPool,
    outbox: Outbox,
    breaker: Breaker,
    config: SagaConfig,
    counters: Counters,
    completed: Completed,
}

/// Each user's last PAID checkout whose `ORDER_COMPLETED` may not have reached the cart yet,
/// kept (when the saga answers before the event is published, `!await_events`) until the user's
/// next lease, which hands it to the Cart side: a cart still held by it gives up its items there
/// and then instead of refusing the next checkout until the event comes. Bounded: past
/// [`Completed::LIMIT`] users the entries older than [`Completed::KEPT`] go, and if none is,
/// no more are kept (the event still does the work).
#[derive(Default)]
struct Completed(dashmap::DashMap<String, (CompletedCheckout, std::time::Instant)>);

impl Completed {
    const LIMIT: usize = 65_536;
    const KEPT: Duration = Duration::from_secs(30);

    fn remember(&self, order: &Order, checkout_id: Uuid) {
        if self.0.len() >= Self::LIMIT {
            self.0.retain(|_, (_, at)| at.elapsed() < Self::KEPT);
            if self.0.len() >= Self::LIMIT {
                return;
            }
        }
        let done = CompletedCheckout { order_id: order.id, checkout_id, items: order.lines() };
        self.0.insert(order.username.clone(), (done, std::time::Instant::now()));
    }

    fn take(&self, username: &str) -> Option<CompletedCheckout> {
        self.0.remove(username).map(|(_, (done, _))| done)
    }
}

pub struct CheckoutSaga {
    deps: Arc<SagaDeps>,
}

impl Actor for CheckoutSaga {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.deps.config.mailbox_capacity);
    }
}

impl Supervised for CheckoutSaga {}

impl Handler<Checkout> for CheckoutSaga {
    type Result = ResponseFuture<Result<Order, CheckoutError>>;

    fn handle(&mut self, msg: Checkout, _ctx: &mut Self::Context) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(async move {
            deps.counters.started.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let span = msg.span.clone();
            let result = tracing::Instrument::instrument(run(&deps, msg), span).await;
            let counter = match &result {
                Ok((_, Answer::Replayed)) => &deps.counters.replayed,
                Ok((o, Answer::Made)) if o.status == OrderStatus::Cancelled => &deps.counters.cancelled,
                Ok((_, Answer::Made)) => &deps.counters.paid,
                Err(CheckoutError::Unavailable(_)) => &deps.counters.failed,
                Err(_) => &deps.counters.refused,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if matches!(result, Ok((_, Answer::Made))) {
                deps.counters.durations.observe(started.elapsed());
            }
            result.map(|(order, _)| order)
        })
    }
}

fn unavailable(e: impl std::fmt::Display) -> CheckoutError {
    CheckoutError::Unavailable(e.to_string())
}

async fn existing_order(
    deps: &SagaDeps,
    username: &str,
    key: Option<&str>,
) -> Result<Option<Order>, CheckoutError> {
    match key {
        Some(key) => deps.orders.find_by_idempotency_key(username, key).await.map_err(unavailable),
        None => Ok(None),
    }
}

async fn run(deps: &SagaDeps, req: Checkout) -> Result<(Order, Answer), CheckoutError> {
    // One timer bounds every forward step; compensations run with each message's own timeout,
    // since they must still run when a step has used the deadline up.
    let mut deadline = Deadline::after(deps.config.deadline);
    let username = req.username.as_str();
    let key = req.idempotency_key.as_deref();
    if let Some(order) = deadline.bound(existing_order(deps, username, key)).await.map_err(unavailable)?? {
        return Ok((order, Answer::Replayed));
    }
    let mut turn = match deps.breaker.admit() {
        Admit::No(retry_after) => return Err(CheckoutError::PaymentUnavailable { retry_after }),
        admitted => Turn { breaker: &deps.breaker, probe: admitted == Admit::Probe },
    };
    let permit = deps.pool.permit().await.map_err(|_| CheckoutError::Busy)?;
    let lease = match lease_cart(deps, &mut deadline, username, key).await? {
        Step::Next(lease) => lease,
        Step::Done(order) => return Ok((order, Answer::Replayed)),
    };
    reserve(deps, &mut deadline, username, &lease).await?;
    fault::point("after-reservation");
    let order = match create_order(deps, &mut deadline, &req, &lease).await? {
        Step::Next(order) => order,
        Step::Done(order) => return Ok((order, Answer::Replayed)),
    };
    fault::point("after-order");
    // Its ORDER_CREATED event goes out with the outcome's (the relay sends oldest first), or on
    // the relay's timer if this checkout never gets that far: no relay round of its own.

    let charged = match deadline.bound(charge(deps, &permit, &order)).await {
        Ok(charged) => charged,
        Err(expired) => Err(PoolError::Gateway(GatewayError::Unavailable(expired.to_string()))),
    };
    turn.report(&charged);
    drop(permit);
    fault::point("after-payment");
    let order = finish(deps, &mut deadline, &order, charged, lease.checkout_id).await?;
    fault::point("after-order-update");
    if order.status != OrderStatus::Paid {
        release(deps, username, lease.checkout_id).await;
    } else if !deps.config.await_events {
        deps.completed.remember(&order, lease.checkout_id);
    }
    announce(deps, &order).await;
    Ok((order, Answer::Made))
}

/// This checkout's turn past the circuit breaker: a probe that never reaches payment gives its
/// turn back.
struct Turn<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Turn<'_> {
    fn report(&mut self, charged: &Result<PaymentReceipt, PoolError>) {
        match charged {
            Err(PoolError::Gateway(_)) => self.breaker.failed(),
            _ => self.breaker.succeeded(),
        }
        self.probe = false;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probe_abandoned();
        }
    }
}

/// Where a step leaves the checkout: go on with its result, or done with an order that exists.
enum Step<T> {
    Next(T),
    Done(Order),
}

/// Step 3: the cart, held for this checkout. A cart held by another checkout may be held by this
/// key's first request: then its order is the answer.
async fn lease_cart(
    deps: &SagaDeps,
    deadline: &mut Deadline,
    username: &str,
    key: Option<&str>,
) -> Result<Step<CheckoutLease>, CheckoutError> {
    // The user's checkout before, if it may still hold the cart (see `Completed`).
    let completed = if deps.config.await_events { None } else { deps.completed.take(username) };
    // A lease granted after the deadline has passed is not known here; it lapses after its TTL.
    match deadline.bound(deps.carts.begin_checkout(username, completed)).await.map_err(unavailable)? {
        Ok(lease) => Ok(Step::Next(lease)),
        Err(CartPortError::Empty) => Err(CheckoutError::EmptyCart),
        Err(CartPortError::CheckoutInProgress) => {
            existing_order(deps, username, key).await?.map(Step::Done).ok_or(CheckoutError::InProgress)
        }
        Err(e @ CartPortError::Unavailable(_)) => Err(unavailable(e)),
    }
}

/// Compensation: the cart back to the user, untouched.
async fn release(deps: &SagaDeps, username: &str, checkout_id: Uuid) {
    if let Err(e) = deps.carts.release_checkout(username, checkout_id).await {
        tracing::warn!(username, error = %e, "could not release the cart; its lease will lapse");
    }
}

/// Step 4: every line of the leased cart reserved in the stock, all or nothing. A line the stock
/// cannot cover ends the checkout before any order or payment exists; the cart is given back.
async fn reserve(
    deps: &SagaDeps,
    deadline: &mut Deadline,
    username: &str,
    lease: &CheckoutLease,
) -> Result<(), CheckoutError> {
    let lines: Vec<LineQuantity> =
        lease.items.iter().map(|i| LineQuantity { product_id: i.product_id, quantity: i.quantity }).collect();
    let reserved = match deadline.bound(deps.stock.reserve(lease.checkout_id, &lines)).await {
        Ok(reserved) => reserved,
        // It may have been made after all: it is released (or lapses after its TTL).
        Err(expired) => Err(StockError::Unavailable(expired.to_string())),
    };
    let Err(e) = reserved else { return Ok(()) };
    if matches!(e, StockError::Unavailable(_)) {
        release_stock(deps, lease.checkout_id).await;
    }
    release(deps, username, lease.checkout_id).await;
    Err(match e {
        StockError::Insufficient(shortage) => CheckoutError::OutOfStock(shortage),
        StockError::UnknownProduct(id) => CheckoutError::UnknownProduct(id),
        e @ StockError::Unavailable(_) => unavailable(e),
    })
}

/// Runs a step after the outcome (stock committed or released, payment voided) a few times;
/// whether it got done.
async fn follow_up<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    deps: &SagaDeps,
    what: &'static str,
    step: impl Fn() -> F,
) -> Option<T> {
    let retry =
        Retry { attempts: deps.config.charge_attempts, backoff: Backoff::Linear(deps.config.retry_backoff) };
    let timeout = deps.config.follow_up_timeout;
    let attempt = || async {
        match tokio::time::timeout(timeout, step()).await {
            Ok(done) => done.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    };
    match retry.run(what, |_| true, attempt).await {
        Ok(done) => Some(done),
        Err(e) => {
            tracing::warn!(step = what, error = %e, "left for recovery");
            None
        }
    }
}

/// Compensation: the reserved units back on sale (or, failing that, back after the TTL).
async fn release_stock(deps: &SagaDeps, checkout_id: Uuid) -> bool {
    follow_up(deps, "release stock", || deps.stock.release(checkout_id)).await.is_some()
}

/// Step 5: the order PENDING, with the leased items. If it cannot be made the stock and the cart
/// are given back; a key already used answers the order it made.
async fn create_order(
    deps: &SagaDeps,
    deadline: &mut Deadline,
    req: &Checkout,
    lease: &CheckoutLease,
) -> Result<Step<Order>, CheckoutError> {
    let username = req.username.as_str();
    let items: Vec<OrderItem> = lease.items.iter().map(OrderItem::from).collect();
    let total_amount = items.iter().map(|i| i.price * Decimal::from(i.quantity)).sum();
    let new = NewOrder {
        username: username.to_owned(),
        items,
        total_amount,
        idempotency_key: req.idempotency_key.clone(),
        checkout_id: Some(lease.checkout_id),
        traceparent: crate::trace::outgoing(),
    };
    let created = match deadline.bound(deps.orders.create(new)).await {
        Ok(created) => created,
        Err(expired) => Err(OrderError::Registry(RegistryError::Timeout(expired.0))),
    };
    match created {
        Ok(order) => Ok(Step::Next(order)),
        Err(e) => {
            // An order that did get stored after the deadline stays PENDING: recovery ends it.
            release_stock(deps, lease.checkout_id).await;
            release(deps, username, lease.checkout_id).await;
            if let OrderError::Store(StoreError::Duplicate(_)) = e
                && let Some(order) = existing_order(deps, username, req.idempotency_key.as_deref()).await?
            {
                return Ok(Step::Done(order));
            }
            Err(unavailable(e))
        }
    }
}

/// Step 7: what the charge makes of the order: PAID with the gateway's transaction id, or
/// CANCELLED with the gateway's reason (or [`PAYMENT_UNAVAILABLE`] when payment could not be
/// taken at all).
fn outcome(charged: &Result<PaymentReceipt, PoolError>, order: &Order, checkout_id: Uuid) -> Transition {
    let change = match charged {
        Ok(r) if r.status == PaymentStatus::Success => {
            Transition { payment_id: r.transaction_id.clone(), ..Transition::to(OrderStatus::Paid) }
        }
        Ok(r) => Transition {
            failure_reason: Some(r.failure_reason.clone().unwrap_or_else(|| "Payment declined".to_owned())),
            ..Transition::to(OrderStatus::Cancelled)
        },
        Err(e) => {
            tracing::error!(order_id = order.id, error = %e, "payment could not be taken; cancelling");
            Transition {
                failure_reason: Some(PAYMENT_UNAVAILABLE.to_owned()),
                ..Transition::to(OrderStatus::Cancelled)
            }
        }
    };
    Transition { checkout_id: Some(checkout_id), traceparent: crate::trace::outgoing(), ..change }
}

/// Steps 7 and 8: the steps the outcome asks for, then the outcome stored with its event. PAID
/// commits the reservation; CANCELLED releases it and, when the payment could not be taken,
/// closes the payment side (a late charge is refunded). A step that cannot be done now leaves
/// the order `unsettled`, for recovery.
async fn finish(
    deps: &SagaDeps,
    deadline: &mut Deadline,
    order: &Order,
    charged: Result<PaymentReceipt, PoolError>,
    checkout_id: Uuid,
) -> Result<Order, CheckoutError> {
    let mut change = outcome(&charged, order, checkout_id);
    // With `stock_follows_events` the outcome's event ends the reservation.
    let by_event = deps.config.stock_follows_events;
    let done = if change.to == OrderStatus::Paid {
        by_event || follow_up(deps, "commit stock", || deps.stock.commit(checkout_id)).await.is_some()
    } else {
        // While the breaker is open Payment is known to be away: recovery voids it later.
        let voided =
            charged.is_ok() || (!deps.breaker.is_open() && void(deps, order, PAYMENT_UNAVAILABLE).await);
        (by_event || release_stock(deps, checkout_id).await) && voided
    };
    change.unsettled = !done;
    settle(deps, deadline, order, change).await
}

/// The payment side of an order cancelled without a gateway answer: FAILED if it never charged,
/// REFUNDED if it did. Whether Payment answered.
async fn void(deps: &SagaDeps, order: &Order, reason: &str) -> bool {
    let request = VoidRequest {
        order_id: order.id,
        username: order.username.clone(),
        amount: order.total_amount,
        reason: reason.to_owned(),
    };
    follow_up(deps, "void payment", || deps.gateway.void(request.clone())).await.is_some()
}

/// Step 8: the outcome stored, with its event in the outbox.
async fn settle(
    deps: &SagaDeps,
    deadline: &mut Deadline,
    order: &Order,
    outcome: Transition,
) -> Result<Order, CheckoutError> {
    let settle = deps.orders.settle(order, outcome);
    // Cancelling because the charge ran out of time is compensation: it gets its own timers.
    let settled = if deadline.passed() {
        settle.await
    } else {
        deadline
            .bound(settle)
            .await
            .unwrap_or_else(|Expired(after)| Err(RegistryError::Timeout(after).into()))
    };
    settled.map_err(|e| {
        tracing::error!(order_id = order.id, error = %e, "order outcome could not be stored; recovery will end it");
        unavailable(e)
    })
}

/// The outcome's event on its way: published before answering (`await_events`), or the relay
/// kicked.
async fn announce(deps: &SagaDeps, order: &Order) {
    if deps.config.await_events {
        if let Err(e) = deps.outbox.flush(deps.config.event_timeout).await {
            tracing::warn!(order_id = order.id, error = %e, "outcome event not yet published; the relay will retry");
        }
    } else {
        deps.outbox.kick();
    }
}

async fn charge(deps: &SagaDeps, permit: &PoolPermit, order: &Order) -> Result<PaymentReceipt, PoolError> {
    let request =
        ChargeRequest { order_id: order.id, username: order.username.clone(), amount: order.total_amount };
    let retry =
        Retry { attempts: deps.config.charge_attempts, backoff: Backoff::Linear(deps.config.retry_backoff) };
    retry.run("charge", |_| true, || deps.pool.charge(permit, request.clone())).await
}

/// The handle through which checkouts are started. Cheap to clone.
///
/// There is one supervisor per arbiter, and a user's checkouts go to the one on the arbiter that
/// hosts the user's cart; the saga's order and payment worker are picked on that arbiter too, so
/// a checkout's steps mostly pass messages within one thread.
#[derive(Clone)]
pub struct Checkouts {
    supervisors: Arc<[Addr<CheckoutSaga>]>,
    deps: Arc<SagaDeps>,
}

impl Checkouts {
    pub(crate) fn start(runtime: &ActorRuntime, ports: SagaPorts, config: SagaConfig) -> Self {
        let SagaPorts { carts, stock, gateway, orders, pool, outbox } = ports;
        let breaker = Breaker::new(config.breaker.clone());
        let deps = Arc::new(SagaDeps {
            carts,
            stock,
            gateway,
            orders,
            pool,
            outbox,
            breaker,
            config,
            counters: Counters::default(),
            completed: Completed::default(),
        });
        let supervisors = runtime
            .arbiters()
            .iter()
            .map(|arbiter| {
                let d = deps.clone();
                Supervisor::start_in_arbiter(arbiter, move |_| CheckoutSaga { deps: d })
            })
            .collect();
        Self { supervisors, deps }
    }

    pub async fn checkout(
        &self,
        username: &str,
        idempotency_key: Option<String>,
    ) -> Result<Order, CheckoutError> {
        let supervisor = &self.supervisors[placement(username, self.supervisors.len())];
        let msg = Checkout { username: username.to_owned(), idempotency_key, span: tracing::Span::current() };
        match supervisor.send(msg).timeout(self.deps.config.request_timeout).await {
            Ok(result) => result,
            Err(MailboxError::Timeout) => Err(CheckoutError::Busy),
            Err(MailboxError::Closed) => {
                Err(CheckoutError::Unavailable("the checkout saga has stopped".into()))
            }
        }
    }

    pub fn stats(&self) -> SagaStats {
        let c = &self.deps.counters;
        SagaStats {
            started: c.started.load(Ordering::Relaxed),
            paid: c.paid.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// How long the checkouts that made an order (PAID or CANCELLED) took.
    pub fn durations(&self) -> DurationSnapshot {
        self.deps.counters.durations.snapshot()
    }
}
