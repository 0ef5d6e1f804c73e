//! How long something took, counted in fixed buckets with atomics: what the saga and the outbox
//! relay measure of themselves, for whoever exports figures (the services' `/metrics`). A
//! measurement is two relaxed atomic adds and a few compares; nothing is allocated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 1 ms to about 16 s, doubling.
pub const BOUNDS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384,
];

/// A histogram of durations. `Default` is empty.
#[derive(Debug, Default)]
pub struct Durations {
    /// Per bucket (the last one past every bound), not cumulative.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

/// What a [`Durations`] held when read.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationSnapshot {
    /// `(upper bound in seconds, count in that bucket alone)`; the last bound is infinite.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Durations {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BOUNDS.iter().position(|b| seconds <= *b).unwrap_or(BOUNDS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> DurationSnapshot {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let bounds = BOUNDS.iter().copied().chain([f64::INFINITY]);
        DurationSnapshot {
            count: counts.iter().sum(),
            buckets: bounds.zip(counts).collect(),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_lands_in_the_first_bucket_that_holds_it() {
        let d = Durations::default();
        for ms in [0, 1, 3, 20_000] {
            d.observe(Duration::from_millis(ms));
        }
        let s = d.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.001, 2), "0 and 1 ms");
        assert_eq!(s.buckets[2], (0.004, 1), "3 ms");
        assert_eq!(*s.buckets.last().expect("buckets"), (f64::INFINITY, 1), "20 s");
        assert!((s.sum_seconds - 20.004).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
