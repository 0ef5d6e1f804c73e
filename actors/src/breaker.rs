//! A circuit breaker in front of the payment side.
//!
//! Closed, every checkout goes on to payment. After `failures` charges in a row that could not
//! be taken (the payment side unreachable or silent, not a declined card) it opens: for
//! `open_for` new checkouts are refused at once, before any order is created, so a client hears
//! "try again shortly" within a second instead of waiting out timeouts. Then it lets one checkout
//! through as a probe (half-open): its charge succeeding closes the breaker, failing opens it
//! again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Charges in a row that could not be taken before the breaker opens (0: never opens).
    pub failures: u32,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures: 3, open_for: Duration::from_secs(2) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else is refused until it comes back.
    Probing,
}

pub(crate) struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

/// What the breaker says to a new checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    /// Yes, as the probe: report how its charge went.
    Probe,
    /// No: the payment side is down; ask again after this long.
    No(Duration),
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self { config, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn admit(&self) -> Admit {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Admit::Yes,
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::Probing;
                    Admit::Probe
                } else {
                    Admit::No(until - now)
                }
            }
            State::Probing => Admit::No(self.config.open_for),
        }
    }

    /// Whether the payment side is known to be unreachable right now (open, or probing).
    pub(crate) fn is_open(&self) -> bool {
        match *self.state() {
            State::Closed { .. } => false,
            State::Open { until } => Instant::now() < until,
            State::Probing => true,
        }
    }

    /// A charge was taken (approved or declined): the payment side answers.
    pub(crate) fn succeeded(&self) {
        *self.state() = State::Closed { failures: 0 };
    }

    /// A charge could not be taken.
    pub(crate) fn failed(&self) {
        if self.config.failures == 0 {
            return;
        }
        let mut state = self.state();
        let open = State::Open { until: Instant::now() + self.config.open_for };
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.config.failures => {
                State::Closed { failures: failures + 1 }
            }
            State::Closed { .. } | State::Probing => {
                tracing::warn!(open_for = ?self.config.open_for, "payment unreachable: circuit breaker open");
                open
            }
            open @ State::Open { .. } => open,
        };
    }

    /// A probe that never reached payment (the cart was empty, say) gives its turn back.
    pub(crate) fn probe_abandoned(&self) {
        let mut state = self.state();
        if *state == State::Probing {
            *state = State::Open { until: Instant::now() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_a_probe_closes_it() {
        let b = Breaker::new(BreakerConfig { failures: 2, open_for: Duration::from_millis(30) });
        assert_eq!(b.admit(), Admit::Yes);
        b.failed();
        assert_eq!(b.admit(), Admit::Yes, "one failure is not enough");
        b.succeeded();
        b.failed();
        assert_eq!(b.admit(), Admit::Yes, "a success in between starts the count again");
        b.failed();
        assert!(matches!(b.admit(), Admit::No(_)), "two in a row open it");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(), Admit::Probe);
        assert!(matches!(b.admit(), Admit::No(_)), "one probe at a time");
        b.failed();
        assert!(matches!(b.admit(), Admit::No(_)), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(), Admit::Probe);
        b.succeeded();
        assert_eq!(b.admit(), Admit::Yes);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_one_through() {
        let b = Breaker::new(BreakerConfig { failures: 1, open_for: Duration::from_millis(10) });
        b.failed();
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(b.admit(), Admit::Probe);
        b.probe_abandoned();
        assert_eq!(b.admit(), Admit::Probe);
    }
}
