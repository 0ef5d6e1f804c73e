//! The in-process event bus of embedded mode.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::model::OrderEvent;
use crate::ports::{BusError, EventBus, EventHandler};
use crate::retry::{Backoff, Retry};

/// Delivers each event to every subscriber before `publish` returns, in subscription order, so
/// that when a checkout answers, the cart has already seen its outcome. A failing handler is
/// retried a few times; an event it still cannot take is logged and reported to the publisher.
#[derive(Default)]
pub struct InProcessBus {
    /// Replaced whole on subscribe, so that a publish takes a snapshot with one reference count.
    handlers: RwLock<Arc<[Arc<dyn EventHandler>]>>,
}

const DELIVERY_ATTEMPTS: u32 = 3;

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe(&self, handler: Arc<dyn EventHandler>) {
        let mut handlers = match self.handlers.write() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        *handlers = handlers.iter().cloned().chain([handler]).collect();
    }

    fn handlers(&self) -> Arc<[Arc<dyn EventHandler>]> {
        match self.handlers.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, event: OrderEvent) -> Result<(), BusError> {
        let mut failure = None;
        let retry =
            Retry { attempts: DELIVERY_ATTEMPTS, backoff: Backoff::Linear(Duration::from_millis(20)) };
        for handler in self.handlers().iter() {
            if let Err(e) = retry.run("event delivery", |_| true, || handler.handle(&event)).await {
                tracing::error!(order_id = event.order_id, error = %e, "event handler gave up");
                failure = Some(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Keeps every event it sees; for tests and examples.
#[derive(Default)]
pub struct EventLog {
    events: std::sync::Mutex<Vec<OrderEvent>>,
}

impl EventLog {
    pub fn events(&self) -> Vec<OrderEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl EventHandler for EventLog {
    async fn handle(&self, event: &OrderEvent) -> Result<(), BusError> {
        self.events.lock().map_err(|_| BusError("event log poisoned".into()))?.push(event.clone());
        Ok(())
    }
}
