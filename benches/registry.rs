//! Criterion benchmarks of the registry: activating and passivating entity actors, and finding
//! live actors from many tasks at once.
//!
//! `cargo bench -p shop-actors --bench registry`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shop_actors::memory::MemoryPayments;
use shop_actors::{Core, CoreConfig};

// The same allocator as the `shop` binary and the checkout benchmark.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BATCH: usize = 256;

/// One element = one cart actor activated (its first message loads the cart from the store and
/// answers) and passivated (asked to stop; it leaves the registry). 256 carts at a time, each a
/// user never seen before.
fn activation_passivation(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (core, _bus) =
        Core::in_memory(CoreConfig::default(), Arc::new(MemoryPayments::new(0))).expect("core");
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("actor_lifecycle");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("activate_passivate", |b| {
        b.to_async(&rt).iter(|| async {
            let first = next.fetch_add(BATCH as u64, Ordering::Relaxed);
            let cycles = (first..first + BATCH as u64).map(|n| {
                let carts = core.cart.carts.clone();
                async move {
                    let user = format!("lifecycle-{n}");
                    carts.get(&user).await.expect("activate");
                    assert!(carts.passivate(&user).await, "the cart actor was not live");
                }
            });
            futures::future::join_all(cycles).await;
        });
    });
    group.finish();
    core.shutdown();
}

const TASKS: usize = 64;
const LOOKUPS_PER_TASK: usize = 1000;

/// One element = one registry lookup of a live cart actor, made by one of 64 tasks running at
/// once on a multi-threaded runtime: spread over 10,000 live carts, or all on one hot cart.
fn registry_contention(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (core, _bus) =
        Core::in_memory(CoreConfig::default(), Arc::new(MemoryPayments::new(0))).expect("core");
    let keys: Arc<Vec<String>> = Arc::new((0..10_000).map(|i| format!("contention-{i}")).collect());
    rt.block_on(async {
        for key in keys.iter() {
            core.cart.carts.get(key).await.expect("activate");
        }
    });
    let mut group = c.benchmark_group("registry_lookup");
    group.throughput(Throughput::Elements((TASKS * LOOKUPS_PER_TASK) as u64));
    for (name, spread) in [("10000_keys", keys.len()), ("one_hot_key", 1)] {
        group.bench_with_input(BenchmarkId::from_parameter(name), &spread, |b, &spread| {
            b.to_async(&rt).iter(|| async {
                let tasks = (0..TASKS).map(|t| {
                    let (registry, keys) = (core.cart.carts.registry().clone(), keys.clone());
                    tokio::spawn(async move {
                        for i in 0..LOOKUPS_PER_TASK {
                            let key = &keys[(t * 7919 + i * 31) % spread];
                            registry.actor(key).expect("lookup");
                        }
                    })
                });
                for task in futures::future::join_all(tasks).await {
                    task.expect("task");
                }
            });
        });
    }
    group.finish();
    let live = core.cart.carts.stats().live;
    assert_eq!(live, keys.len(), "lookups must find the live actors, not activate new ones");
    core.shutdown();
}

criterion_group!(benches, activation_passivation, registry_contention);
criterion_main!(benches);
