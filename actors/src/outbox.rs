//! The outbox relay: moves events from the order store's outbox to the event bus.
//!
//! Every order event is written in the same transaction as the change it announces, so an event
//! is never lost and never announces a change that was not stored. The relay publishes unsent
//! events oldest first and marks them sent; it runs on a timer and whenever a checkout kicks it.
//! A publish that fails stops the round; the rest goes out on a later round, in order. An event
//! may be published twice (a crash between publish and mark, or two relays on one database):
//! consumers ignore duplicates.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::ports::{BusError, EventBus, OrderStore};
use crate::runtime::ActorRuntime;

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// How often the relay looks for unsent events without being kicked.
    pub poll_interval: Duration,
    /// Events read per query.
    pub batch: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self { poll_interval: Duration::from_millis(500), batch: 100 }
    }
}

/// Relay whatever is unsent; answers how many events went out.
#[derive(Clone, Copy)]
struct Relay;

impl Message for Relay {
    type Result = Result<usize, BusError>;
}

pub struct OutboxRelay {
    store: Arc<dyn OrderStore>,
    bus: Arc<dyn EventBus>,
    config: OutboxConfig,
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(self.config.poll_interval, |_, ctx| {
            // A failed timed round is retried on the next tick.
            let _ = ctx.address().try_send(Relay);
        });
    }
}

impl Handler<Relay> for OutboxRelay {
    type Result = AtomicResponse<Self, Result<usize, BusError>>;

    fn handle(&mut self, _: Relay, _ctx: &mut Self::Context) -> Self::Result {
        let (store, bus, batch) = (self.store.clone(), self.bus.clone(), self.config.batch.max(1));
        AtomicResponse::new(Box::pin(
            async move {
                let mut relayed = 0;
                loop {
                    let pending = store.unsent_events(batch).await.map_err(|e| BusError(e.to_string()))?;
                    if pending.is_empty() {
                        return Ok(relayed);
                    }
                    let mut sent = Vec::with_capacity(pending.len());
                    let mut failure = None;
                    for event in pending {
                        let id = event.event_id;
                        match bus.publish(event).await {
                            Ok(()) => sent.push(id),
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        }
                    }
                    relayed += sent.len();
                    if !sent.is_empty() {
                        store.mark_sent(&sent).await.map_err(|e| BusError(e.to_string()))?;
                    }
                    if let Some(e) = failure {
                        tracing::warn!(error = %e, "outbox relay paused: the event bus refused an event");
                        return Err(e);
                    }
                }
            }
            .into_actor(self),
        ))
    }
}

/// The handle through which the saga hurries the relay along. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    relay: Addr<OutboxRelay>,
}

impl Outbox {
    pub fn start(
        runtime: &ActorRuntime,
        store: Arc<dyn OrderStore>,
        bus: Arc<dyn EventBus>,
        config: OutboxConfig,
    ) -> Self {
        let relay = OutboxRelay::start_in_arbiter(runtime.arbiter_for("outbox-relay"), move |_| {
            OutboxRelay { store, bus, config }
        });
        Self { relay }
    }

    /// Asks for a relay round without waiting for it.
    pub fn kick(&self) {
        let _ = self.relay.try_send(Relay);
    }

    /// Relays what is unsent now and waits (at most `timeout`) until it has gone out.
    pub async fn flush(&self, timeout: Duration) -> Result<usize, BusError> {
        match self.relay.send(Relay).timeout(timeout).await {
            Ok(result) => result,
            Err(e) => Err(BusError(format!("outbox relay: {e}"))),
        }
    }
}
