//! The storefront in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core (`tests/browser/storefront.mjs`) against the embedded system's gateway. The
//! test fails, saying what to install, when Node.js, Chromium or playwright-core is missing
//! (`scripts/test` installs them). Screenshots of each page go to `target/storefront/`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{ADMIN_PASSWORD, TestApp};
use shop_services::payment::{GatewayConfig, GatewayDecision, MockGateway};

/// A gateway seed whose first charge is declined and whose second is approved: the failure
/// flow, then the retry that pays.
async fn decline_then_approve() -> u64 {
    for seed in 0..10_000 {
        let gateway = MockGateway::new(&GatewayConfig {
            success_rate: 0.5,
            seed: Some(seed),
            ..GatewayConfig::default()
        })
        .expect("gateway");
        let first = gateway.decide(1).await;
        let second = gateway.decide(2).await;
        if matches!(first, GatewayDecision::Declined { .. })
            && matches!(second, GatewayDecision::Approved { .. })
        {
            return seed;
        }
    }
    panic!("no seed declines and then approves");
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_shops_through_the_storefront_in_chromium() {
    let chromium = std::env::var("SHOP_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's (apt-get install chromium) or set SHOP_TEST_CHROMIUM"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test does)"
    );
    let seed = decline_then_approve().await;
    let t = TestApp::spawn_with(|c| {
        c.payment_success_rate = 0.5;
        c.payment_seed = Some(seed);
    })
    .await;
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/storefront");
    let base = format!("http://{}", t.app.gateway_addr());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(browser_dir().join("storefront.mjs"))
            .env("SHOP_BASE", base)
            .env("SHOP_ADMIN", ADMIN_PASSWORD)
            .env("SHOP_SHOTS", &shots)
            .env("SHOP_CHROMIUM", chromium)
            .output()
    })
    .await
    .expect("joined")
    .expect("node runs (install Node.js 20 or later)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "the browser run failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok - no script errors"), "the run did not finish:\n{stdout}");
    t.app.stop().await;
}
