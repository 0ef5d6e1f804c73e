//! What the load tool measured: the recorder the workers share, and the report it becomes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The run in slices of `--slice-seconds`: what finished in each (whole checkouts, health
    /// requests), and how long those took.
    pub timeline: Vec<Slice>,
    /// The latency distribution of the whole checkout (or of the health request): `[percentile,
    /// ms]` from the median to the maximum, densest in the tail.
    pub distribution: Vec<[f64; 2]>,
    /// The steps of `--ramp` and the rate it found sustained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampReport>,
}

/// One slice of the run's timeline.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Slice {
    /// When the slice began, seconds from the start of the checkouts (or requests).
    pub at_seconds: f64,
    /// Operations that finished in it.
    pub done: u64,
    /// `done` per second.
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What `--ramp` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RampReport {
    pub steps: Vec<RampStep>,
    /// The highest offered rate whose step kept up, if any did.
    pub sustained_rate: Option<f64>,
    /// Why the ramp stopped where it did.
    pub stopped: String,
}

/// One step of the ramp: an open loop at `rate` for `seconds`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RampStep {
    pub rate: f64,
    pub at_seconds: f64,
    pub seconds: f64,
    pub offered: usize,
    pub completed: usize,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// How long after the step's last checkout was due its checkouts had all answered.
    pub drained_seconds: f64,
    /// Whether it kept up: every checkout answered within the ramp's grace after the step, no
    /// errors, and p99 within `--ramp-p99-ms`.
    pub kept_up: bool,
}

impl LoadReport {
    /// The report of a run of plain requests (no checkouts): `ok` of them answered with success,
    /// the rest of what `rec` saw counted as errors.
    pub(super) fn of_requests(scenario: Scenario, rec: &Recorder, ok: u64, seconds: f64) -> Self {
        let failed: u64 = rec.errors.values().sum();
        Self {
            scenario,
            operations: usize::try_from(ok + failed).unwrap_or(usize::MAX),
            seconds,
            per_second: ok as f64 / seconds,
            paid: 0,
            cancelled: 0,
            errors: rec.errors.clone(),
            held_cart_retries: 0,
            endpoints: endpoint_reports(rec),
            audit: None,
            cpu_seconds: BTreeMap::new(),
            timeline: rec.timeline(),
            distribution: rec.distribution(),
            ramp: None,
        }
    }

    /// Errors of the checkouts themselves (not of the login flood beside them).
    pub fn checkout_errors(&self) -> u64 {
        self.errors.iter().filter(|(what, _)| !what.starts_with("login_flood")).map(|(_, n)| n).sum()
    }
}

/// What one run (or one worker, or one ramp step) saw. Latencies go under their endpoint; those of
/// the `primary` endpoint (the whole checkout, or the health request) also under the slice of the
/// run they finished in.
pub(super) struct Recorder {
    pub(super) histograms: BTreeMap<&'static str, Histogram<u64>>,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) paid: usize,
    pub(super) cancelled: usize,
    pub(super) held_retries: u64,
    primary: &'static str,
    origin: Instant,
    slice: Duration,
    slices: Vec<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 1 hour, 3 significant figures: constant bounds that are valid.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

impl Recorder {
    /// A recorder whose timeline starts at `origin`, in slices of `slice` (at least 1 ms).
    pub(super) fn new(primary: &'static str, origin: Instant, slice: Duration) -> Self {
        Self {
            histograms: BTreeMap::new(),
            errors: BTreeMap::new(),
            paid: 0,
            cancelled: 0,
            held_retries: 0,
            primary,
            origin,
            slice: slice.max(Duration::from_millis(1)),
            slices: Vec::new(),
        }
    }

    /// Another recorder on the same timeline.
    pub(super) fn sibling(&self) -> Self {
        Self::new(self.primary, self.origin, self.slice)
    }

    /// Moves the timeline's start (before anything was recorded on it).
    pub(super) fn start_at(&mut self, origin: Instant) {
        self.origin = origin;
    }

    pub(super) fn record(&mut self, endpoint: &'static str, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.histograms.entry(endpoint).or_insert_with(histogram).record(micros);
        if endpoint == self.primary {
            let at = self.origin.elapsed().as_nanos() / self.slice.as_nanos();
            let at = usize::try_from(at).unwrap_or(usize::MAX).min(1 << 20);
            if self.slices.len() <= at {
                self.slices.resize_with(at + 1, histogram);
            }
            let _ = self.slices[at].record(micros);
        }
    }

    /// Adds what `other` saw (on the same timeline) to this one.
    pub(super) fn merge(&mut self, other: Recorder) {
        for (name, h) in other.histograms {
            let _ = self.histograms.entry(name).or_insert_with(histogram).add(h);
        }
        for (what, n) in other.errors {
            *self.errors.entry(what).or_default() += n;
        }
        self.paid += other.paid;
        self.cancelled += other.cancelled;
        self.held_retries += other.held_retries;
        if self.slices.len() < other.slices.len() {
            self.slices.resize_with(other.slices.len(), histogram);
        }
        for (mine, theirs) in self.slices.iter_mut().zip(other.slices) {
            let _ = mine.add(theirs);
        }
    }

    /// The primary endpoint's latencies: how many, p50, p99 (ms).
    pub(super) fn primary(&self) -> (u64, f64, f64) {
        self.histograms.get(self.primary).map_or((0, 0.0, 0.0), |h| (h.len(), ms(h, 0.5), ms(h, 0.99)))
    }

    pub(super) fn timeline(&self) -> Vec<Slice> {
        let width = self.slice.as_secs_f64();
        self.slices
            .iter()
            .enumerate()
            .map(|(i, h)| Slice {
                at_seconds: i as f64 * width,
                done: h.len(),
                per_second: h.len() as f64 / width,
                p50_ms: ms(h, 0.5),
                p99_ms: ms(h, 0.99),
            })
            .collect()
    }

    /// `[percentile, ms]` of the primary endpoint, from p50 to the maximum.
    pub(super) fn distribution(&self) -> Vec<[f64; 2]> {
        let Some(h) = self.histograms.get(self.primary).filter(|h| !h.is_empty()) else { return Vec::new() };
        let mut points: Vec<[f64; 2]> = h
            .iter_quantiles(2)
            .map(|v| [v.quantile_iterated_to() * 100.0, v.value_iterated_to() as f64 / 1000.0])
            .filter(|[p, _]| *p >= 50.0)
            .collect();
        points.dedup_by(|a, b| a[0] == b[0]);
        points
    }

    pub(super) fn error(&mut self, endpoint: &str, status: &str) {
        *self.errors.entry(format!("{endpoint} {status}")).or_default() += 1;
    }

    /// The errors recorded under `endpoint`, whatever their status.
    pub(super) fn errors_of(&self, endpoint: &str) -> u64 {
        self.errors
            .iter()
            .filter(|(what, _)| what.split_once(' ').is_some_and(|(e, _)| e == endpoint))
            .map(|(_, n)| n)
            .sum()
    }
}

pub(super) type Shared = Arc<Mutex<Recorder>>;

pub(super) fn shared(r: Recorder) -> Shared {
    Arc::new(Mutex::new(r))
}

/// What `r` has recorded, leaving it empty (on the same timeline).
pub(super) fn take(r: &Shared) -> Recorder {
    let mut r = lock(r);
    let empty = r.sibling();
    std::mem::replace(&mut *r, empty)
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub(super) fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Recorder> {
    match r.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Percentiles of each endpoint's histogram.
pub(super) fn endpoint_reports(r: &Recorder) -> BTreeMap<String, EndpointReport> {
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
        (Scenario::Checkout, _) if c.ramp => "open-loop ramp".to_owned(),
        (Scenario::Checkout, Some(rate)) => format!("open loop at {rate}/s"),
        _ => format!("closed loop, concurrency {}", c.concurrency),
    };
    let unit = match r.scenario {
        Scenario::Checkout => "checkouts",
        Scenario::Health => "requests",
        Scenario::Commits => "commits",
        Scenario::Lists => "pages",
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
    if let Some(ramp) = &r.ramp {
        println!(
            "{:>10} {:>8} {:>10} {:>9} {:>9} {:>10}  kept up",
            "rate /s", "offered", "completed", "p50 ms", "p99 ms", "drained s"
        );
        for s in &ramp.steps {
            println!(
                "{:>10.1} {:>8} {:>10} {:>9.2} {:>9.2} {:>10.2}  {}",
                s.rate,
                s.offered,
                s.completed,
                s.p50_ms,
                s.p99_ms,
                s.drained_seconds,
                if s.kept_up { "yes" } else { "no" }
            );
        }
        match ramp.sustained_rate {
            Some(rate) => println!("sustained: {rate}/s ({})", ramp.stopped),
            None => println!("sustained: not even the first step ({})", ramp.stopped),
        }
    }
}
