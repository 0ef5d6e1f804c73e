//! Fault injection for the recovery tests: the process aborts at a named point of the checkout.
//!
//! `SHOP_FAULT=<point>` aborts the process the first time a checkout reaches `<point>`;
//! `SHOP_FAULT=<point>:<n>` the n-th time, so that some checkouts finish before it. Unset (the
//! default), a point costs one relaxed atomic load. The points, in saga order:
//!
//! | point | where |
//! |---|---|
//! | `after-reservation` | the stock is reserved; no order yet |
//! | `after-order` | the order is stored PENDING; no payment yet |
//! | `after-payment-pending` | the payment is stored PENDING; the gateway not yet asked (Payment) |
//! | `after-gateway` | the gateway answered; the payment not yet updated (Payment) |
//! | `after-payment` | the payment is updated; the order not yet (Order) |
//! | `after-order-update` | the order's outcome is stored; its event not yet published |
//! | `after-event` | the event is published; the cart not yet changed (Cart) |
//!
//! An abort is what a crash is: no destructor runs, nothing is flushed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every point, for settings and tests.
pub const POINTS: [&str; 7] = [
    "after-reservation",
    "after-order",
    "after-payment-pending",
    "after-gateway",
    "after-payment",
    "after-order-update",
    "after-event",
];

struct Armed {
    point: String,
    nth: u64,
    hits: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

fn armed() -> Option<&'static Armed> {
    ARMED
        .get_or_init(|| {
            let value = std::env::var("SHOP_FAULT").ok()?;
            let (point, nth) = match value.split_once(':') {
                Some((point, nth)) => (point.to_owned(), nth.parse().unwrap_or(1)),
                None => (value, 1),
            };
            if !POINTS.contains(&point.as_str()) {
                tracing::error!(point, "SHOP_FAULT names no fault point; ignored");
                return None;
            }
            tracing::warn!(point, nth, "fault injection armed: the process will abort there");
            Some(Armed { point, nth: nth.max(1), hits: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Aborts the process here if `SHOP_FAULT` names this point (and this is its n-th hit).
pub fn point(name: &'static str) {
    if let Some(armed) = armed()
        && armed.point == name
        && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.nth
    {
        eprintln!("SHOP_FAULT: aborting at {name}");
        std::process::abort();
    }
}
