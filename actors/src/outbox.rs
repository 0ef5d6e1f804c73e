//! The outbox relay: moves events from the order store's outbox to the event bus.
//!
//! Every order event is written in the same transaction as the change it announces, so an event
//! is never lost and never announces a change that was not stored. The relay publishes unsent
//! events oldest first and marks them sent; it runs on a timer and whenever a checkout kicks it.
//!
//! Rounds are coalesced: while a round runs, every kick and flush that arrives is served by one
//! more round after it, so a thousand checkouts waiting for their events cost a few rounds, not
//! a thousand. Within a round, events of different users are published concurrently and events
//! of one user one after another, in the order they were written (the order a consumer keyed by
//! user sees on one partition). A publish that fails stops its user's events for this round; the
//! rest of that user's events go out on a later round, in order. An event may be published twice
//! (a crash between publish and mark): consumers ignore duplicates.
//!
//! Several Order instances share one outbox: a relay publishes only while it holds the outbox's
//! lease (stored, `lease` long, renewed as it runs), so two relays never publish one row twice.
//! A relay that stops lets its lease lapse and another takes over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::deadline::Deadline;
use crate::durations::{DurationSnapshot, Durations};
use crate::model::OrderEvent;
use crate::ports::{BusError, EventBus, OrderStore};
use crate::runtime::ActorRuntime;

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// How often the relay looks for unsent events without being kicked.
    pub poll_interval: Duration,
    /// Events read per query.
    pub batch: usize,
    /// How long one round may take, one timer for all its publishes (a deadline); a round
    /// still running then is abandoned, and what it had not marked sent goes out on a later one.
    pub round_timeout: Duration,
    /// How long the relay's lease on the outbox lasts; renewed when half of it is left.
    pub lease: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            batch: 256,
            round_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(10),
        }
    }
}

/// This relay's hold on the outbox.
struct Lease {
    owner: uuid::Uuid,
    length: Duration,
    /// Until when it is held, as far as this relay knows.
    until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Lease {
    /// Whether this relay may publish now: it holds the lease, renewing it when half is left.
    async fn hold(&self, store: &dyn OrderStore) -> Result<bool, BusError> {
        let now = std::time::Instant::now();
        let held = self.until.lock().map(|u| *u).unwrap_or(None);
        if held.is_some_and(|until| until > now + self.length / 2) {
            return Ok(true);
        }
        let length = chrono::Duration::from_std(self.length).unwrap_or(chrono::Duration::MAX);
        let took = store
            .claim_relay(self.owner, chrono::Utc::now() + length)
            .await
            .map_err(|e| BusError(format!("outbox lease: {e}")))?;
        if let Ok(mut until) = self.until.lock() {
            *until = took.then_some(now + self.length);
        }
        Ok(took)
    }
}

type Waiter = oneshot::Sender<Result<usize, BusError>>;

/// Relay whatever is unsent; with a waiter, answer it once a round that started after this
/// message has finished.
struct Relay(Option<Waiter>);

impl Message for Relay {
    type Result = ();
}

pub struct OutboxRelay {
    store: Arc<dyn OrderStore>,
    lease: Arc<Lease>,
    bus: Arc<dyn EventBus>,
    lag: Arc<Durations>,
    config: OutboxConfig,
    running: bool,
    /// Another round is owed: something was kicked while a round ran.
    again: bool,
    /// Flushes waiting for the next round to finish.
    waiters: Vec<Waiter>,
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.config.poll_interval, |act, ctx| act.request(None, ctx));
    }
}

impl Handler<Relay> for OutboxRelay {
    type Result = ();

    fn handle(&mut self, Relay(waiter): Relay, ctx: &mut Self::Context) {
        self.request(waiter, ctx);
    }
}

impl OutboxRelay {
    fn request(&mut self, waiter: Option<Waiter>, ctx: &mut Context<Self>) {
        self.waiters.extend(waiter);
        if self.running {
            self.again = true;
        } else {
            self.start_round(ctx);
        }
    }

    fn start_round(&mut self, ctx: &mut Context<Self>) {
        self.running = true;
        self.again = false;
        let waiters = std::mem::take(&mut self.waiters);
        let round = relay_round(
            self.store.clone(),
            self.bus.clone(),
            self.lease.clone(),
            self.lag.clone(),
            self.config.batch.max(1),
        );
        let mut deadline = Deadline::after(self.config.round_timeout);
        let round = async move {
            deadline.bound(round).await.unwrap_or_else(|e| Err(BusError(format!("outbox relay round: {e}"))))
        };
        ctx.spawn(round.into_actor(self).map(move |result, act, ctx| {
            if let Err(e) = &result {
                tracing::warn!(error = %e, "outbox relay paused: the event bus refused an event");
            }
            for waiter in waiters {
                // A waiter that gave up is no longer listening; nothing to tell it.
                let _ = waiter.send(result.clone());
            }
            act.running = false;
            if act.again || !act.waiters.is_empty() {
                act.start_round(ctx);
            }
        }));
    }
}

/// Publishes unsent events until none are left, answering how many went out.
async fn relay_round(
    store: Arc<dyn OrderStore>,
    bus: Arc<dyn EventBus>,
    lease: Arc<Lease>,
    lag: Arc<Durations>,
    batch: usize,
) -> Result<usize, BusError> {
    let mut relayed = 0;
    loop {
        if !lease.hold(&*store).await? {
            // Another relay holds the outbox: it publishes these.
            return Ok(relayed);
        }
        let pending = store.unsent_events(batch).await.map_err(|e| BusError(e.to_string()))?;
        let full = pending.len() >= batch;
        if pending.is_empty() {
            return Ok(relayed);
        }
        let mut by_user: HashMap<String, Vec<OrderEvent>> = HashMap::new();
        for event in pending {
            by_user.entry(event.username.clone()).or_default().push(event);
        }
        let chains = by_user.into_values().map(|events| publish_in_order(&*bus, &lag, events));
        let mut sent = Vec::new();
        let mut failure = None;
        for (ids, error) in futures::future::join_all(chains).await {
            sent.extend(ids);
            failure = failure.or(error);
        }
        relayed += sent.len();
        if !sent.is_empty() {
            store.mark_sent(&sent).await.map_err(|e| BusError(e.to_string()))?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !full {
            return Ok(relayed);
        }
    }
}

/// Publishes one user's events one after another, stopping at the first failure; each one
/// published adds how long it waited since it was written to `lag`.
async fn publish_in_order(
    bus: &dyn EventBus,
    lag: &Durations,
    events: Vec<OrderEvent>,
) -> (Vec<uuid::Uuid>, Option<BusError>) {
    let mut sent = Vec::with_capacity(events.len());
    for event in events {
        let (id, written) = (event.event_id, event.occurred_at);
        if let Err(e) = bus.publish(event).await {
            return (sent, Some(e));
        }
        lag.observe((chrono::Utc::now() - written).to_std().unwrap_or_default());
        sent.push(id);
    }
    (sent, None)
}

/// The handle through which the saga hurries the relay along. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    relay: Addr<OutboxRelay>,
    lag: Arc<Durations>,
}

impl Outbox {
    pub fn start(
        runtime: &ActorRuntime,
        store: Arc<dyn OrderStore>,
        bus: Arc<dyn EventBus>,
        config: OutboxConfig,
    ) -> Self {
        let lease =
            Arc::new(Lease { owner: uuid::Uuid::new_v4(), length: config.lease, until: Default::default() });
        let lag = Arc::new(Durations::default());
        let relay_lag = lag.clone();
        let relay =
            OutboxRelay::start_in_arbiter(runtime.arbiter_for("outbox-relay"), move |_| OutboxRelay {
                store,
                lease,
                bus,
                lag: relay_lag,
                config,
                running: false,
                again: false,
                waiters: Vec::new(),
            });
        Self { relay, lag }
    }

    /// How long the events this relay published had waited in the outbox since they were written.
    pub fn relay_lag(&self) -> DurationSnapshot {
        self.lag.snapshot()
    }

    /// Asks for a relay round without waiting for it.
    pub fn kick(&self) {
        self.relay.do_send(Relay(None));
    }

    /// Relays what is unsent now and waits (at most `timeout`) until it has gone out.
    pub async fn flush(&self, timeout: Duration) -> Result<usize, BusError> {
        let (tx, rx) = oneshot::channel();
        self.relay.do_send(Relay(Some(tx)));
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BusError("outbox relay: it has stopped".into())),
            Err(_) => Err(BusError(format!("outbox relay: nothing relayed within {timeout:?}"))),
        }
    }
}
