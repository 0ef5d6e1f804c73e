//! What the load tool measured: the recorder the workers share, and the report it becomes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use shop_services::tools::audit::AuditReport;

use super::{LoadConfig, Scenario};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointReport {
    pub requests: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub scenario: Scenario,
    /// Checkouts placed, requests sent or commits made.
    pub operations: usize,
    pub seconds: f64,
    /// Operations finished per second (checkouts answered PAID or CANCELLED, successful requests,
    /// commits).
    pub per_second: f64,
    pub paid: usize,
    pub cancelled: usize,
    /// Answers other than success, by endpoint and status ("transport" when there was none).
    pub errors: BTreeMap<String, u64>,
    /// Checkouts answered 409 because the user's previous checkout still held the cart (its
    /// event not yet applied, as in distributed mode) and asked again (after 10, 20, 40 … 250 ms).
    pub held_cart_retries: u64,
    pub endpoints: BTreeMap<String, EndpointReport>,
    /// CPU seconds each `--cpu-of` process spent during the checkouts.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_seconds: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditReport>,
}

impl LoadReport {
    /// Errors of the checkouts themselves (not of the login flood beside them).
    pub fn checkout_errors(&self) -> u64 {
        self.errors.iter().filter(|(what, _)| !what.starts_with("login_flood")).map(|(_, n)| n).sum()
    }
}

#[derive(Default)]
pub(super) struct Recorder {
    pub(super) histograms: BTreeMap<&'static str, Histogram<u64>>,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) paid: usize,
    pub(super) cancelled: usize,
    pub(super) held_retries: u64,
}

impl Recorder {
    pub(super) fn record(&mut self, endpoint: &'static str, latency: Duration) {
        // Microseconds, 1 µs to 1 hour, 3 significant figures: constant bounds that are valid.
        let h = self.histograms.entry(endpoint).or_insert_with(|| {
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
        });
        let _ = h.record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1));
    }

    pub(super) fn error(&mut self, endpoint: &str, status: &str) {
        *self.errors.entry(format!("{endpoint} {status}")).or_default() += 1;
    }
}

pub(super) type Shared = Arc<Mutex<Recorder>>;

pub(super) fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Recorder> {
    match r.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Percentiles of each endpoint's histogram.
pub(super) fn endpoint_reports(r: &Recorder) -> BTreeMap<String, EndpointReport> {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    r.histograms
        .iter()
        .map(|(name, h)| {
            let e = EndpointReport {
                requests: h.len(),
                p50_ms: ms(h, 0.5),
                p90_ms: ms(h, 0.9),
                p99_ms: ms(h, 0.99),
                p999_ms: ms(h, 0.999),
                max_ms: h.max() as f64 / 1000.0,
            };
            ((*name).to_owned(), e)
        })
        .collect()
}

pub(super) fn print_report(r: &LoadReport, c: &LoadConfig) {
    let mode = match (r.scenario, c.rate) {
        (Scenario::Commits, _) => format!("{} writers", c.concurrency),
        (Scenario::Checkout, Some(rate)) => format!("open loop at {rate}/s"),
        _ => format!("closed loop, concurrency {}", c.concurrency),
    };
    let unit = match r.scenario {
        Scenario::Checkout => "checkouts",
        Scenario::Health => "requests",
        Scenario::Commits => "commits",
    };
    println!("{} {unit} ({mode}) in {:.2} s: {:.1} {unit}/s", r.operations, r.seconds, r.per_second);
    if r.scenario == Scenario::Checkout {
        println!(
            "PAID {}  CANCELLED {}  (checkouts retried on a still-held cart: {})",
            r.paid, r.cancelled, r.held_cart_retries
        );
    }
    if !r.endpoints.is_empty() {
        println!(
            "{:<12} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "endpoint", "requests", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
    }
    for (name, e) in &r.endpoints {
        println!(
            "{name:<12} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            e.requests, e.p50_ms, e.p90_ms, e.p99_ms, e.p999_ms, e.max_ms
        );
    }
    if r.errors.is_empty() {
        println!("errors: none");
    } else {
        for (what, n) in &r.errors {
            println!("error {what}: {n}");
        }
    }
    if let Some(audit) = &r.audit {
        if audit.is_clean() {
            println!("audit: clean ({} orders, {} payments)", audit.orders, audit.payments);
        } else {
            println!("audit: {} violations", audit.violations.len());
            for v in &audit.violations {
                println!("  {v}");
            }
        }
    }
}
