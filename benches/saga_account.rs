//! Where a checkout's microseconds go: the CPU time of the in-process saga (the criterion
//! `checkout_saga/1024` workload) per checkout and per thread, beside the cost of the actor
//! primitives it is made of, measured in the same run and at the same concurrency.
//!
//! `cargo bench -p shop-actors --bench saga_account` (optionally `-- <rounds>`, default 200;
//! `-- <rounds> saga` stops after the checkouts, for a profiler).
//!
//! CPU time is each thread's `sum_exec_runtime` from `/proc/self/task/*/schedstat`
//! (nanoseconds), read before and after each timed phase; no sampling. A primitive's cost is a
//! difference between two runs of the same harness that differ only in that primitive, so the
//! harness's own cost (the caller's task, its message to the hub) cancels out. docs/PERFORMANCE.md
//! puts the figures together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use shop_actors::memory::MemoryPayments;
use shop_actors::model::ProductSnapshot;
use shop_actors::runtime::ActorRuntime;
use shop_actors::{Core, CoreConfig, Decimal};

// The allocator of the `shop` binary and the criterion benchmarks.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CONCURRENCY: usize = 1024;
const WARM_UP_ROUNDS: usize = 30;

/// CPU nanoseconds so far of every thread of this process, by thread name.
fn cpu_by_thread() -> BTreeMap<String, u64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return by_name };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_owned();
        let ran = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
            .unwrap_or(0);
        // Arbiter threads are all named "actix-rt|system:0|arbiter:N", cut to 15 bytes: told apart
        // by thread id. Tokio's workers share a name and are counted together.
        let group = if name.starts_with("actix-rt") {
            format!("actor arbiter (thread {})", task.file_name().to_string_lossy())
        } else {
            name
        };
        *by_name.entry(group).or_insert(0) += ran;
    }
    by_name
}

/// Wall and CPU time of a phase, summed over its runs.
#[derive(Default)]
struct Spent {
    wall: Duration,
    cpu: BTreeMap<String, u64>,
}

impl Spent {
    fn add(&mut self, wall: Duration, before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) {
        self.wall += wall;
        for (name, ns) in after {
            *self.cpu.entry(name.clone()).or_insert(0) += ns.saturating_sub(*before.get(name).unwrap_or(&0));
        }
    }

    fn cpu_total(&self) -> u64 {
        self.cpu.values().sum()
    }

    /// Microseconds of CPU per element, and of wall time per element.
    fn per(&self, elements: usize) -> (f64, f64) {
        let n = elements.max(1) as f64;
        (self.cpu_total() as f64 / 1e3 / n, self.wall.as_secs_f64() * 1e6 / n)
    }
}

/// Times `work`, which does nothing before it is first polled (an `async` block): what it spawns
/// is spawned inside the timed span.
async fn timed<F: std::future::Future>(spent: &mut Spent, work: F) -> F::Output {
    let before = cpu_by_thread();
    let started = Instant::now();
    let out = work.await;
    let wall = started.elapsed();
    spent.add(wall, &before, &cpu_by_thread());
    out
}

fn mouse() -> ProductSnapshot {
    ProductSnapshot { id: 2, name: "Mouse".into(), price: Decimal::new(2999, 2) }
}

/// The criterion `checkout_saga/1024` workload: fill 1,024 carts, then check all of them out at
/// once; the fill and the checkouts timed apart.
fn checkouts(rt: &tokio::runtime::Runtime, rounds: usize) -> (Spent, Spent) {
    let (core, _bus) =
        Core::in_memory(CoreConfig::default(), Arc::new(MemoryPayments::new(5))).expect("core");
    let users: Vec<String> = (0..CONCURRENCY).map(|i| format!("account-user-{i}")).collect();
    let (mut fill, mut saga) = (Spent::default(), Spent::default());
    rt.block_on(async {
        for round in 0..WARM_UP_ROUNDS + rounds {
            let (mut f, mut s) = (Spent::default(), Spent::default());
            let fills = users.iter().map(|u| core.cart.carts.add(u, mouse(), 1));
            for filled in timed(&mut f, async { futures::future::join_all(fills).await }).await {
                filled.expect("add");
            }
            let runs = users.iter().map(|u| {
                let (checkouts, u) = (core.order.checkouts.clone(), u.clone());
                tokio::spawn(async move { checkouts.checkout(&u, None).await.expect("checkout") })
            });
            for run in timed(&mut s, async { futures::future::join_all(runs).await }).await {
                run.expect("task");
            }
            if round >= WARM_UP_ROUNDS {
                fill.add(f.wall, &BTreeMap::new(), &f.cpu);
                saga.add(s.wall, &BTreeMap::new(), &s.cpu);
            }
        }
    });
    let stats = core.order.checkouts.stats();
    assert_eq!(stats.paid + stats.cancelled, ((WARM_UP_ROUNDS + rounds) * CONCURRENCY) as u64);
    core.shutdown();
    (fill, saga)
}

/// Answers at once.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Ping(u64);

impl Handler<Ping> for Echo {
    type Result = u64;

    fn handle(&mut self, Ping(n): Ping, _: &mut Self::Context) -> u64 {
        n + 1
    }
}

/// What the hub does for each request before answering, from a task of its own on its arbiter
/// (as the saga runs each checkout).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Work {
    /// Nothing: the cost of the request itself (a message from another thread, a task, a reply).
    Nothing,
    /// This many round trips to an actor on the same arbiter, one after another.
    Local(u64),
    /// The same, each under a 30 s `tokio::time::timeout` (a timer armed and cancelled).
    LocalTimed(u64),
    /// An actor started on this arbiter, one round trip to it, and stopped (its address dropped).
    Lifecycle,
}

struct Hub {
    echo: Addr<Echo>,
}

impl Actor for Hub {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Request(Work);

impl Handler<Request> for Hub {
    type Result = ResponseFuture<u64>;

    fn handle(&mut self, Request(work): Request, _: &mut Self::Context) -> Self::Result {
        let echo = self.echo.clone();
        Box::pin(async move {
            let mut n = 0;
            match work {
                Work::Nothing => {}
                Work::Local(k) => {
                    for _ in 0..k {
                        n = echo.send(Ping(n)).await.unwrap_or(n);
                    }
                }
                Work::LocalTimed(k) => {
                    for _ in 0..k {
                        let answer = tokio::time::timeout(Duration::from_secs(30), echo.send(Ping(n))).await;
                        n = answer.ok().and_then(Result::ok).unwrap_or(n);
                    }
                }
                Work::Lifecycle => {
                    let fresh = Echo.start();
                    n = fresh.send(Ping(n)).await.unwrap_or(n);
                }
            }
            n
        })
    }
}

/// 1,024 requests in flight, spread over one hub per arbiter, `rounds` times.
fn primitive(rt: &tokio::runtime::Runtime, runtime: &ActorRuntime, work: Work, rounds: usize) -> Spent {
    let hubs: Vec<Addr<Hub>> = runtime
        .arbiters()
        .iter()
        .map(|a| {
            let echo = Echo::start_in_arbiter(a, |_| Echo);
            Hub::start_in_arbiter(a, move |_| Hub { echo })
        })
        .collect();
    let mut spent = Spent::default();
    rt.block_on(async {
        for round in 0..WARM_UP_ROUNDS + rounds {
            let mut s = Spent::default();
            let runs = (0..CONCURRENCY).map(|i| {
                let hub = hubs[i % hubs.len()].clone();
                tokio::spawn(async move { hub.send(Request(work)).await.expect("hub") })
            });
            for run in timed(&mut s, async { futures::future::join_all(runs).await }).await {
                run.expect("task");
            }
            if round >= WARM_UP_ROUNDS {
                spent.add(s.wall, &BTreeMap::new(), &s.cpu);
            }
        }
    });
    spent
}

fn main() {
    let rounds: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let n = rounds * CONCURRENCY;

    let (fill, saga) = checkouts(&rt, rounds);
    println!(
        "in-process saga, {rounds} rounds of {CONCURRENCY} checkouts at once (after {WARM_UP_ROUNDS} to warm up)"
    );
    for (what, spent) in [("checkout (timed by criterion)", &saga), ("cart add (the fill, untimed)", &fill)] {
        let (cpu, wall) = spent.per(n);
        println!(
            "  {what}: {cpu:.2} µs CPU, {wall:.2} µs wall each ({:.0}/s; {:.2} cores busy)",
            1e6 / wall,
            cpu / wall
        );
        let arbiters: u64 =
            spent.cpu.iter().filter(|(t, _)| t.starts_with("actor arbiter")).map(|(_, ns)| ns).sum();
        println!("      {:<30} {:6.2} µs", "actor arbiters, all", arbiters as f64 / 1e3 / n as f64);
        for (thread, ns) in &spent.cpu {
            if *ns > 0 {
                println!("      {thread:<30} {:6.2} µs", *ns as f64 / 1e3 / n as f64);
            }
        }
    }

    // `-- <rounds> saga`: the checkouts alone, for a profiler.
    if std::env::args().any(|a| a == "saga") {
        return;
    }
    let runtime = ActorRuntime::start(CoreConfig::default().arbiters).expect("actor runtime");
    let cost = |work| primitive(&rt, &runtime, work, rounds).per(n);
    let nothing = cost(Work::Nothing);
    let local = cost(Work::Local(4));
    let timed_local = cost(Work::LocalTimed(4));
    let lifecycle = cost(Work::Lifecycle);
    let one_local = cost(Work::Local(1));
    runtime.shutdown();
    println!("actor primitives, {CONCURRENCY} in flight, CPU µs each (wall µs per element in brackets)");
    println!(
        "  request from a tokio task to an actor's own task on an arbiter, and its answer: {:.2} ({:.2})",
        nothing.0, nothing.1
    );
    println!(
        "  round trip to an actor on the same arbiter, from a task there: {:.2} ({:.2})",
        (local.0 - nothing.0) / 4.0,
        (local.1 - nothing.1) / 4.0
    );
    println!(
        "  a timer armed and cancelled around it (tokio::time::timeout): {:.2} ({:.2})",
        (timed_local.0 - local.0) / 4.0,
        (timed_local.1 - local.1) / 4.0
    );
    println!(
        "  an actor started and stopped, beyond its one round trip: {:.2} ({:.2})",
        lifecycle.0 - one_local.0,
        lifecycle.1 - one_local.1
    );
}
