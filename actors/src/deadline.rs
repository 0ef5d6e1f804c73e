//! One timer for a chain of actor messages.
//!
//! Every message to an entity actor or a payment worker is bounded: a caller never waits forever
//! on an actor that is stuck. Bounded one by one, a checkout's half a dozen messages each get a
//! timer and a timeout of their own, and together they can outlast the caller who is waiting for
//! the checkout. A [`Deadline`] bounds a whole chain of steps with one timer instead: while a step
//! runs under [`Deadline::bound`], the messages it sends carry no timer of their own, and the
//! deadline cancels whatever step is waiting when it passes.
//!
//! A step that awaits a message under a deadline is dropped when the deadline passes. The
//! message may still be handled afterwards, exactly as when a per-message timeout fires: every
//! step of the saga is idempotent or fenced by a version, and the caller compensates.

use std::future::Future;
use std::pin::{Pin, pin};
use std::time::Duration;

use futures::future::{Either, select};
use tokio::time::Sleep;

tokio::task_local! {
    static BOUNDED: ();
}

/// The deadline passed before the step finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not finished within {0:?}")]
pub struct Expired(pub Duration);

/// A point in time after which the steps run under it are abandoned. One timer, however many
/// steps and messages.
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self { sleep: Box::pin(tokio::time::sleep(budget)), budget }
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        self.sleep.is_elapsed()
    }

    /// Runs `step` until it finishes or the deadline passes, whichever comes first. Messages the
    /// step sends to entity actors ([`crate::registry::Registry`]) and payment workers wait
    /// without timers of their own meanwhile: this deadline is their bound.
    pub async fn bound<F: Future>(&mut self, step: F) -> Result<F::Output, Expired> {
        if self.passed() {
            return Err(Expired(self.budget));
        }
        let step = pin!(BOUNDED.scope((), step));
        match select(step, self.sleep.as_mut()).await {
            Either::Left((out, _)) => Ok(out),
            Either::Right(((), _)) => Err(Expired(self.budget)),
        }
    }
}

/// Whether the current task runs under a [`Deadline`], which then bounds its messages.
pub(crate) fn bounded() -> bool {
    BOUNDED.try_with(|_| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_step_finished_in_time_returns_its_output() {
        let mut deadline = Deadline::after(Duration::from_secs(1));
        let out = deadline.bound(async { bounded() }).await;
        assert_eq!(out, Ok(true), "the step runs under the deadline");
        assert!(!bounded(), "outside a step nothing is bounded");
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_still_running_at_the_deadline_is_abandoned() {
        let mut deadline = Deadline::after(Duration::from_secs(1));
        let first = deadline.bound(tokio::time::sleep(Duration::from_millis(600))).await;
        assert_eq!(first, Ok(()));
        // The budget is shared: the second step has only the 400 ms left.
        let second = deadline.bound(tokio::time::sleep(Duration::from_millis(600))).await;
        assert_eq!(second, Err(Expired(Duration::from_secs(1))));
        assert!(deadline.passed());
        let third = deadline.bound(async { 7 }).await;
        assert_eq!(third, Err(Expired(Duration::from_secs(1))), "nothing starts after the deadline");
    }
}
