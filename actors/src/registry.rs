//! Finding, activating, passivating and rebuilding entity actors.
//!
//! The registry maps an entity key (a username, an order id) to the address of the one actor that
//! owns that entity in this process. A missing actor is activated on the arbiter its key hashes
//! to; it loads its state from storage on its first message. An actor idle for longer than
//! [`RegistryConfig::idle_timeout`] stops itself and leaves the map (passivation); the next
//! message activates a fresh one. An actor that dies (a panic in a handler) is noticed on the
//! next send, which fails with `MailboxError::Closed`: the registry drops it, counts a restart and
//! activates a fresh actor that rebuilds its state from storage. More than
//! [`RegistryConfig::max_restarts`] restarts of one key within
//! [`RegistryConfig::restart_window`] make that key refuse messages until the window has passed,
//! so a poisoned entity cannot spin the system.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use dashmap::DashMap;

use crate::deadline;
use crate::runtime::ActorRuntime;

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// How long an actor may sit without messages before it passivates.
    pub idle_timeout: Duration,
    /// How long a caller waits for an answer, including the wait for mailbox room; a caller
    /// running under a deadline (a checkout's) waits until that deadline instead.
    pub request_timeout: Duration,
    /// Messages an actor's mailbox holds before senders wait (then time out).
    pub mailbox_capacity: usize,
    pub max_restarts: u32,
    pub restart_window: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            mailbox_capacity: 64,
            max_restarts: 5,
            restart_window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("the entity did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the entity is unavailable: {0}")]
    Unavailable(String),
}

/// Asks an entity actor to passivate now: it finishes the messages already queued and stops, as
/// when it has been idle for the idle timeout. Its state stays in storage.
#[derive(Debug, Clone, Copy)]
pub struct Passivate;

impl Message for Passivate {
    type Result = ();
}

/// An actor that owns one entity and can be managed by a [`Registry`]. Its `Passivate` handler
/// stops it (`ctx.stop()`).
pub trait Entity: Actor<Context = Context<Self>> + Handler<Passivate> {
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    /// What every actor of this kind is built with (its store, say).
    type Deps: Clone + Send + Sync + 'static;

    /// Builds the actor for `key`; state is loaded later, on the first message.
    fn new(key: Self::Key, deps: Self::Deps, activation: Activation<Self>) -> Self;
    fn activation(&mut self) -> &mut Activation<Self>;
}

struct Slot<E: Entity> {
    addr: Addr<E>,
    generation: u64,
}

struct Restarts {
    since: Instant,
    count: u32,
}

struct Inner<E: Entity> {
    runtime: Arc<ActorRuntime>,
    deps: E::Deps,
    config: RegistryConfig,
    slots: DashMap<E::Key, Slot<E>>,
    restarts_by_key: DashMap<E::Key, Restarts>,
    next_generation: AtomicU64,
    activations: AtomicU64,
    passivations: AtomicU64,
    restarts: AtomicU64,
}

/// What an entity actor knows about its own activation: enough to passivate itself when idle and
/// to leave the registry when it stops.
pub struct Activation<E: Entity> {
    key: E::Key,
    generation: u64,
    last_active: Instant,
    registry: Weak<Inner<E>>,
}

impl<E: Entity> Activation<E> {
    pub fn key(&self) -> &E::Key {
        &self.key
    }

    /// Marks the actor busy; every handler calls this first.
    pub fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// Call from `Actor::started`: checks idleness periodically and stops the actor once it has
    /// been idle for the registry's idle timeout.
    pub fn started(&self, ctx: &mut Context<E>) {
        let Some(inner) = self.registry.upgrade() else { return };
        let timeout = inner.config.idle_timeout;
        ctx.set_mailbox_capacity(inner.config.mailbox_capacity);
        let period = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
        ctx.run_interval(period, move |act: &mut E, ctx| {
            if act.activation().last_active.elapsed() >= timeout {
                ctx.stop();
            }
        });
    }

    /// Call from `Actor::stopped`: leaves the registry (if this activation is still the current
    /// one), so that the next message activates a fresh actor. actix also runs `stopped` while a
    /// panic unwinds the actor; that stop is counted as a restart, not a passivation.
    pub fn stopped(&self) {
        if let Some(inner) = self.registry.upgrade()
            && inner.slots.remove_if(&self.key, |_, s| s.generation == self.generation).is_some()
        {
            if std::thread::panicking() {
                inner.record_restart(&self.key);
            } else {
                let passivated = inner.passivations.fetch_add(1, Ordering::Relaxed) + 1;
                if passivated % SHRINK_CHECK_EVERY == 0 {
                    inner.shrink_if_sparse();
                }
            }
        }
    }
}

/// Counters for benchmarks, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegistryStats {
    pub live: usize,
    pub activations: u64,
    pub passivations: u64,
    pub restarts: u64,
}

/// Finds or activates the actor of an entity and delivers messages to it. Cheap to clone.
pub struct Registry<E: Entity> {
    inner: Arc<Inner<E>>,
}

impl<E: Entity> Clone for Registry<E> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

/// A message is delivered at most this many times when the actor dies under it.
const MAX_DELIVERY_ATTEMPTS: usize = 3;

impl<E: Entity> Registry<E> {
    pub fn new(runtime: Arc<ActorRuntime>, deps: E::Deps, config: RegistryConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                runtime,
                deps,
                config,
                slots: DashMap::new(),
                restarts_by_key: DashMap::new(),
                next_generation: AtomicU64::new(1),
                activations: AtomicU64::new(0),
                passivations: AtomicU64::new(0),
                restarts: AtomicU64::new(0),
            }),
        }
    }

    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            live: self.inner.slots.len(),
            activations: self.inner.activations.load(Ordering::Relaxed),
            passivations: self.inner.passivations.load(Ordering::Relaxed),
            restarts: self.inner.restarts.load(Ordering::Relaxed),
        }
    }

    /// Sends `msg` to the entity's actor and waits for the answer. If the actor turns out to be
    /// dead, it is replaced by a fresh one (rebuilt from storage) and the message is delivered to
    /// that one, up to [`MAX_DELIVERY_ATTEMPTS`] times. A missing actor is activated on the
    /// arbiter `key` hashes to.
    pub async fn send<M>(&self, key: &E::Key, msg: M) -> Result<M::Result, RegistryError>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        E: Handler<M>,
        E::Context: ToEnvelope<E, M>,
    {
        self.deliver(key, None, msg).await
    }

    /// Like [`Registry::send`], but a missing actor is activated on the arbiter `near` hashes to:
    /// an order next to its user's cart and checkout, so that they talk without crossing threads.
    /// An actor already active stays where it is.
    pub async fn send_near<M, P>(&self, key: &E::Key, near: &P, msg: M) -> Result<M::Result, RegistryError>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        E: Handler<M>,
        E::Context: ToEnvelope<E, M>,
        P: Hash + ?Sized,
    {
        let arbiter = self.inner.runtime.index_for(near);
        self.deliver(key, Some(arbiter), msg).await
    }

    /// The address of the entity's actor, activating one if none is live: for tests that look
    /// at the actor itself, and the registry-contention benchmark.
    #[cfg(feature = "test-support")]
    pub fn actor(&self, key: &E::Key) -> Result<Addr<E>, RegistryError> {
        Ok(self.address(key, None)?.0)
    }

    /// Passivates the entity's actor now if one is live, waiting until it has taken the request
    /// (it stops right after). Answers whether one was live.
    pub async fn passivate(&self, key: &E::Key) -> bool {
        let addr = self.inner.slots.get(key).map(|slot| slot.addr.clone());
        match addr {
            // A mailbox already closed means the actor is gone anyway.
            Some(addr) => addr.send(Passivate).await.is_ok(),
            None => false,
        }
    }

    /// `near`: the arbiter a missing actor is activated on; by default the one `key` hashes to
    /// (worked out only when an actor is activated, not on every send).
    async fn deliver<M>(&self, key: &E::Key, near: Option<usize>, msg: M) -> Result<M::Result, RegistryError>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        E: Handler<M>,
        E::Context: ToEnvelope<E, M>,
    {
        let timeout = self.inner.config.request_timeout;
        for _ in 0..MAX_DELIVERY_ATTEMPTS {
            let (addr, generation) = self.address(key, near)?;
            let request = addr.send(msg.clone());
            // Under a deadline (the checkout saga's) that deadline bounds the wait: no timer here.
            let answer = if deadline::bounded() { request.await } else { request.timeout(timeout).await };
            match answer {
                Ok(answer) => return Ok(answer),
                Err(MailboxError::Timeout) => return Err(RegistryError::Timeout(timeout)),
                Err(MailboxError::Closed) => self.on_closed(key, generation),
            }
        }
        Err(RegistryError::Unavailable(format!("{key:?} kept failing")))
    }

    fn address(&self, key: &E::Key, near: Option<usize>) -> Result<(Addr<E>, u64), RegistryError> {
        if let Some(slot) = self.inner.slots.get(key) {
            return Ok((slot.addr.clone(), slot.generation));
        }
        if let Some(r) = self.inner.restarts_by_key.get(key)
            && r.count > self.inner.config.max_restarts
            && r.since.elapsed() < self.inner.config.restart_window
        {
            return Err(RegistryError::Unavailable(format!(
                "{key:?} restarted {} times within {:?}",
                r.count, self.inner.config.restart_window
            )));
        }
        let slot = self.inner.slots.entry(key.clone()).or_insert_with(|| self.start(key, near));
        Ok((slot.addr.clone(), slot.generation))
    }

    fn start(&self, key: &E::Key, near: Option<usize>) -> Slot<E> {
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let activation = Activation {
            key: key.clone(),
            generation,
            last_active: Instant::now(),
            registry: Arc::downgrade(&self.inner),
        };
        let (k, deps) = (key.clone(), self.inner.deps.clone());
        let arbiter = near.unwrap_or_else(|| self.inner.runtime.index_for(key));
        let arbiter = &self.inner.runtime.arbiters()[arbiter];
        let addr = E::start_in_arbiter(arbiter, move |_ctx| E::new(k, deps, activation));
        self.inner.activations.fetch_add(1, Ordering::Relaxed);
        Slot { addr, generation }
    }

    /// The actor behind `generation` closed its mailbox. If it is still registered it did not
    /// leave through `stopped` (passivation and unwinding both do): it died, so it is a restart.
    fn on_closed(&self, key: &E::Key, generation: u64) {
        if self.inner.slots.remove_if(key, |_, s| s.generation == generation).is_some() {
            self.inner.record_restart(key);
        }
    }
}

/// Every this many passivations, the registry checks whether its map has become sparse.
const SHRINK_CHECK_EVERY: u64 = 1024;

impl<E: Entity> Inner<E> {
    /// A burst of activations grows the map; once most of them have passivated, give the room
    /// back, so that memory returns to what the live actors need.
    fn shrink_if_sparse(&self) {
        let (live, room) = (self.slots.len(), self.slots.capacity());
        if room > 4096 && live.saturating_mul(4) < room {
            self.slots.shrink_to_fit();
        }
        let (crashed, room) = (self.restarts_by_key.len(), self.restarts_by_key.capacity());
        if room > 4096 && crashed.saturating_mul(4) < room {
            self.restarts_by_key.shrink_to_fit();
        }
    }

    fn record_restart(&self, key: &E::Key) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        let window = self.config.restart_window;
        let mut r = self
            .restarts_by_key
            .entry(key.clone())
            .or_insert_with(|| Restarts { since: Instant::now(), count: 0 });
        if r.since.elapsed() >= window {
            *r = Restarts { since: Instant::now(), count: 0 };
        }
        r.count += 1;
        tracing::warn!(key = ?key, restarts = r.count, "entity actor died; it will be rebuilt from storage");
    }
}
