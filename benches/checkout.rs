//! Criterion benchmarks of the actor core with in-memory storage and an instant gateway.
//!
//! `cargo bench -p shop-actors --bench checkout`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shop_actors::memory::MemoryPayments;
use shop_actors::model::ProductSnapshot;
use shop_actors::{Core, CoreConfig, Decimal};

// The `shop` binary's allocator too: the core allocates per message, and glibc's malloc spent a
// quarter of this benchmark's CPU time in the profile (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn mouse() -> ProductSnapshot {
    ProductSnapshot { id: 2, name: "Mouse".into(), price: Decimal::new(2999, 2) }
}

/// One element = one checkout saga run to the end (lease, order, payment, outcome, event applied
/// to the cart). Filling the carts first is not timed: `cart_add` measures that.
fn checkout_saga(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (core, _bus) =
        Core::in_memory(CoreConfig::default(), Arc::new(MemoryPayments::new(5))).expect("core");
    let mut group = c.benchmark_group("checkout_saga");
    for concurrency in [1usize, 64, 1024] {
        let users: Vec<String> = (0..concurrency).map(|i| format!("bench-user-{i}")).collect();
        group.throughput(Throughput::Elements(concurrency as u64));
        group.bench_with_input(BenchmarkId::from_parameter(concurrency), &users, |b, users| {
            b.to_async(&rt).iter_custom(|rounds| {
                let (carts, checkouts) = (core.cart.carts.clone(), core.order.checkouts.clone());
                let users = users.clone();
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..rounds {
                        let fills = users.iter().map(|u| carts.add(u, mouse(), 1));
                        for filled in futures::future::join_all(fills).await {
                            filled.expect("add");
                        }
                        let started = Instant::now();
                        let runs = users.iter().map(|u| {
                            let (checkouts, u) = (checkouts.clone(), u.clone());
                            tokio::spawn(async move { checkouts.checkout(&u, None).await.expect("checkout") })
                        });
                        for run in futures::future::join_all(runs).await {
                            run.expect("task");
                        }
                        timed += started.elapsed();
                    }
                    timed
                }
            });
        });
    }
    group.finish();
    core.shutdown();
}

/// One element = one add-to-cart round trip to an already active cart actor.
fn cart_add(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (core, _bus) =
        Core::in_memory(CoreConfig::default(), Arc::new(MemoryPayments::new(0))).expect("core");
    let mut group = c.benchmark_group("cart_add");
    group.throughput(Throughput::Elements(1));
    group.bench_function("round_trip", |b| {
        b.to_async(&rt).iter(|| async {
            let cart = core.cart.carts.add("bench", mouse(), 1).await.expect("add");
            if cart.items[0].quantity >= 1000 {
                core.cart.carts.clear("bench").await.expect("clear");
            }
        });
    });
    group.finish();
    core.shutdown();
}

criterion_group!(benches, checkout_saga, cart_add);
criterion_main!(benches);
