//! Memory after a burst: 1,000,000 distinct carts touched once, then left idle past the
//! passivation timeout. Resident memory must come back to within 2x of its value before the
//! burst (the target); the run fails otherwise.
//!
//! `cargo bench -p shop-actors --bench memory` (`SHOP_BENCH_CARTS` changes the count).
//!
//! Not a criterion benchmark: it measures one burst, not a repeated operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shop_actors::CartConfig;
use shop_actors::RegistryConfig;
use shop_actors::memory::MemoryPayments;
use shop_actors::{Core, CoreConfig};

// The same allocator as the `shop` binary.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after the burst resident memory may take to come back.
const RETURN_WAIT: Duration = Duration::from_secs(60);

/// Resident memory of this process, from /proc.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib / 1024.0
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument may follow. Neither changes this run.
    let carts: usize =
        std::env::var("SHOP_BENCH_CARTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let registry = RegistryConfig { idle_timeout: IDLE_TIMEOUT, ..RegistryConfig::default() };
    let config =
        CoreConfig { carts: CartConfig { registry, ..CartConfig::default() }, ..CoreConfig::default() };
    let (core, _bus) = Core::in_memory(config, Arc::new(MemoryPayments::new(0))).expect("core");

    rt.block_on(async {
        // Warm up: the runtime, the arbiters and the allocator have done their first work.
        touch(&core, "warm-up", 10_000).await;
        wait_passivated(&core).await;
        let before = rss_mib();

        let started = Instant::now();
        touch(&core, "burst", carts).await;
        let burst = started.elapsed();
        let peak = rss_mib();
        let live = core.cart.carts.stats().live;

        let idle = Instant::now();
        wait_passivated(&core).await;
        let passivated = idle.elapsed();
        // The allocator hands freed pages back on its own clock (jemalloc's background thread,
        // ten-second decay): watch for up to a minute.
        let mut after = rss_mib();
        while after > 2.0 * before && idle.elapsed() < RETURN_WAIT {
            tokio::time::sleep(Duration::from_millis(500)).await;
            after = rss_mib();
        }
        let returned = idle.elapsed();
        // And where it settles.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let settled = rss_mib();
        let stats = core.cart.carts.stats();

        println!(
            "carts touched            {carts} in {:.1} s ({:.0}/s)",
            burst.as_secs_f64(),
            carts as f64 / burst.as_secs_f64()
        );
        println!("live cart actors at peak {live}");
        println!("resident before          {before:.1} MiB");
        println!(
            "resident at peak         {peak:.1} MiB ({:.0} bytes per cart)",
            (peak - before) * 1048576.0 / carts as f64
        );
        println!(
            "resident after idle      {after:.1} MiB ({:.2}x before; all passivated {:.1} s after the burst, \
             measured {:.1} s after it)",
            after / before,
            passivated.as_secs_f64(),
            returned.as_secs_f64()
        );
        println!("resident 10 s later      {settled:.1} MiB ({:.2}x before)", settled / before);
        println!(
            "activations {}  passivations {}  live {}",
            stats.activations, stats.passivations, stats.live
        );
        core.shutdown();
        if after > 2.0 * before || settled > 2.0 * before {
            eprintln!("FAIL: resident memory after idle is more than 2x its value before the burst");
            std::process::exit(1);
        }
        println!("PASS: within 2x of before");
    });
}

/// Sends one read to each of `n` carts, 1024 at a time.
async fn touch(core: &Core, prefix: &str, n: usize) {
    let names: Vec<usize> = (0..n).collect();
    for chunk in names.chunks(1024) {
        let reads = chunk.iter().map(|i| {
            let carts = core.cart.carts.clone();
            let user = format!("{prefix}-{i}");
            async move { carts.get(&user).await.expect("cart read") }
        });
        futures::future::join_all(reads).await;
    }
}

async fn wait_passivated(core: &Core) {
    let deadline = Instant::now() + IDLE_TIMEOUT * 30;
    while core.cart.carts.stats().live > 0 {
        assert!(Instant::now() < deadline, "carts did not passivate: {:?}", core.cart.carts.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
