//! Asking again: one back-off rule and one retry loop for every place that repeats a call (a
//! stale write, a charge, a transient database error, an event delivery, a peer service).
//!
//! Exported for the adapters a host writes around the core (its stores and clients), so that
//! they back off the way the core does.

use std::time::Duration;

/// How long to wait before retry number `n` (the first retry is `n = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// `step · n`.
    Linear(Duration),
    /// `base · 2^n` (`n` capped at `max_doublings`), plus up to as much again at random, so that
    /// two callers contending for one thing stop meeting in lockstep.
    Exponential { base: Duration, max_doublings: u32 },
}

impl Backoff {
    /// The wait before retry `n`.
    pub fn delay(&self, n: u32) -> Duration {
        match *self {
            Backoff::Linear(step) => step.saturating_mul(n),
            Backoff::Exponential { base, max_doublings } => {
                let wait = base.saturating_mul(1 << n.min(max_doublings).min(30));
                // The jitter is a random fraction of the wait; an id's random bits serve as one.
                let fraction = (uuid::Uuid::new_v4().as_u128() % 1025) as u32;
                wait + wait.saturating_mul(fraction) / 1024
            }
        }
    }

    /// Sleeps for [`Backoff::delay`]`(n)`.
    pub async fn wait(&self, n: u32) {
        tokio::time::sleep(self.delay(n)).await;
    }
}

/// A bounded retry: at most `attempts` calls in all, waiting `backoff` between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Backoff,
}

impl Retry {
    /// Calls `op` until it succeeds, fails with an error `retryable` refuses, or has been called
    /// `attempts` times; answers its last result. Each retry is logged with `what`.
    pub async fn run<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
        &self,
        what: &str,
        retryable: impl Fn(&E) -> bool,
        mut op: impl FnMut() -> F,
    ) -> Result<T, E> {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if attempt < self.attempts && retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "{what} failed; asking again");
                    self.backoff.wait(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_exponential_waits_grow_as_documented() {
        let linear = Backoff::Linear(Duration::from_millis(50));
        assert_eq!(linear.delay(1), Duration::from_millis(50));
        assert_eq!(linear.delay(3), Duration::from_millis(150));
        let exp = Backoff::Exponential { base: Duration::from_millis(1), max_doublings: 6 };
        for n in 1..10 {
            let floor = Duration::from_millis(1 << n.min(6));
            let d = exp.delay(n);
            assert!(d >= floor && d <= floor * 2, "retry {n} waited {d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_stops_at_success_at_a_final_error_or_after_its_attempts() {
        use std::cell::Cell;
        let retry = Retry { attempts: 3, backoff: Backoff::Linear(Duration::from_millis(10)) };
        let calls = Cell::new(0);
        let count = || {
            calls.set(calls.get() + 1);
            calls.get()
        };
        let out: Result<u32, String> = retry
            .run(
                "test",
                |_| true,
                || {
                    let n = count();
                    async move { if n < 2 { Err("again".to_owned()) } else { Ok(n) } }
                },
            )
            .await;
        assert_eq!(out, Ok(2));
        calls.set(0);
        let out: Result<(), String> = retry
            .run(
                "test",
                |_| true,
                || {
                    let n = count();
                    async move { Err(format!("failure {n}")) }
                },
            )
            .await;
        assert_eq!(out, Err("failure 3".to_owned()), "three calls in all");
        calls.set(0);
        let out: Result<(), String> = retry
            .run(
                "test",
                |e: &String| e != "final",
                || {
                    count();
                    async { Err("final".to_owned()) }
                },
            )
            .await;
        assert_eq!((out, calls.get()), (Err("final".to_owned()), 1), "a final error is not retried");
    }
}
