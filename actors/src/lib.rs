//! The embeddable actor core of **shop**: carts, orders and the checkout saga as actix actors,
//! with no HTTP and no database in its API.
//!
//! ```text
//!             Carts ──► Registry<CartActor> ──► CartActor (one per username) ──► CartStore
//!               ▲  ▲
//!   CartPort ───┘  └── EventHandler ◄── EventBus ◄──────────────┐
//!      ▲                                                       │ ORDER_CREATED / COMPLETED / CANCELLED
//!      │                                                       │
//!  Checkouts ──► CheckoutSaga (supervisor) ──► PaymentPool ──► PaymentWorker × N ──► PaymentGateway
//!                      │
//!                      └──► Orders ──► Registry<OrderActor> ──► OrderActor (one per order) ──► OrderStore
//! ```
//!
//! What a host uses:
//! - [`model`]: carts, orders, events: plain data.
//! - [`ports`]: the traits a host implements: [`ports::CartStore`], [`ports::OrderStore`],
//!   [`ports::PaymentGateway`], [`ports::EventBus`], and the Order → Cart boundary
//!   [`ports::CartPort`].
//! - [`Core`]: the two halves in one process; [`CartSide`] and [`OrderSide`] to run them apart,
//!   each on an [`runtime::ActorRuntime`] (the actix system and its arbiters, on their own threads).
//! - The handles: [`Carts`], [`Orders`], [`Checkouts`] (the saga), [`PaymentPool`], [`Outbox`].
//! - [`bus`], [`memory`]: the in-process event bus and in-memory stores.
//! - [`retry`]: the back-off rule the core uses, for a host's adapters too.
//!
//! Inside (not exported): `registry` (activation, passivation, rebuilding), `entity` (the
//! write-through engine every entity actor runs its commands on), the entity actors in `cart`
//! and `order`, `payment_pool`, `saga`, `outbox` and `deadline`.
//!
//! # Runtime rules
//!
//! - **One message at a time per entity.** Each cart (keyed by username) and each order (keyed by
//!   id) has exactly one actor in a process. Its handlers return `AtomicResponse`: while a command
//!   awaits storage, no other command of that entity starts. Different entities run concurrently
//!   on the runtime's arbiters (threads), placed by hashing the key.
//! - **Ordering.** Commands from one caller to one entity are handled in the order sent. Commands
//!   from different callers are handled in mailbox arrival order. Nothing is promised across
//!   entities.
//! - **State.** An actor caches its entity and writes every change through before answering; the
//!   answer is sent only once the write is stored. The cache only saves the load before a write:
//!   reads, no-ops and refusals are answered from freshly loaded state, since another process may
//!   share the database and no version check would catch a stale answer that writes nothing. Stores
//!   refuse writes based on a stale version; the actor reloads and decides again (up to 10 attempts,
//!   backing off with jitter after the first), then reports the conflict (HTTP 503). One engine
//!   runs this loop for every entity (`entity`).
//! - **Timeouts and back-pressure.** Every request to an entity waits at most
//!   `RegistryConfig::request_timeout`, including the wait for room in its bounded mailbox
//!   (`mailbox_capacity`); each charge waits at most `PaymentPoolConfig::call_timeout` and is
//!   asked again (idempotently) up to `SagaConfig::charge_attempts` times. Inside a checkout one
//!   deadline (`SagaConfig::deadline`) bounds all of its forward steps instead, with
//!   one timer; past it the checkout compensates. A checkout first takes room in the payment
//!   pool; if none comes within `PaymentPoolConfig::acquire_timeout` it fails as
//!   `CheckoutError::Busy` (HTTP 503).
//! - **Passivation.** An entity actor idle for `idle_timeout` stops and leaves the registry; the
//!   next message activates a fresh one, which reloads from storage.
//! - **Failure.** A store error drops the actor's cached state, so the next message rebuilds it
//!   from storage. A panic in a handler kills the actor; the next send notices the closed mailbox,
//!   and the registry counts a restart and activates a fresh actor (rebuilt from storage) that
//!   receives the message. More than `max_restarts` restarts of one key within `restart_window`
//!   make that key answer `Unavailable` until the window has passed.
//! - **Checkout exclusivity.** A cart under checkout is held (a hold stored with the cart, for
//!   `CartConfig::lease_ttl` at most): a second checkout of the same cart fails with
//!   `CheckoutError::InProgress`. The lease ends when the cart takes the completed order's items
//!   out (on `ORDER_COMPLETED`) or when the saga gives the cart back after a failed payment.
//! - **Events.** The saga publishes `ORDER_CREATED`, then `ORDER_COMPLETED` or `ORDER_CANCELLED`
//!   after the order's outcome is stored. The [`bus::InProcessBus`] delivers to every subscriber
//!   before `publish` returns. The cart applies a completed order at most once (the store records
//!   applied order ids) and removes only the quantities bought, never items added later.

mod breaker;
pub mod bus;
mod cart;
mod core;
mod deadline;
pub mod durations;
mod entity;
pub mod fault;
pub mod memory;
pub mod model;
mod order;
mod outbox;
mod payment_pool;
pub mod ports;
mod recovery;
#[cfg(feature = "test-support")]
pub mod registry;
#[cfg(not(feature = "test-support"))]
mod registry;
pub mod retry;
pub mod runtime;
mod saga;
pub mod trace;

pub use crate::breaker::BreakerConfig;
#[cfg(feature = "test-support")]
pub use crate::cart::CartActor;
pub use crate::cart::{CartConfig, CartError, Carts};
pub use crate::core::{CartSide, Core, CoreConfig, OrderPorts, OrderSide, OrderSideConfig};
pub use crate::order::{OrderError, Orders, Transition};
pub use crate::outbox::{Outbox, OutboxConfig};
pub use crate::payment_pool::{PaymentPool, PaymentPoolConfig};
pub use crate::recovery::{CHECKOUT_INTERRUPTED, Recovery, RecoveryConfig, RecoveryStats};
pub use crate::registry::{RegistryConfig, RegistryError, RegistryStats};
pub use crate::saga::{CheckoutError, Checkouts, PAYMENT_UNAVAILABLE, SagaConfig, SagaStats};
pub use rust_decimal::Decimal;
