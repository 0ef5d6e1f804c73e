//! Embeds the actor core with in-memory storage and runs checkouts: no HTTP, no database.
//!
//! `cargo run -p shop-actors --example embedded_checkout`
//!
//! `scripts/test` runs it: it checks what it shows and exits non-zero if the core did not do
//! what the seed says (a paid order empties the cart, a declined one keeps it, each publishes
//! its event).

use std::sync::Arc;

use shop_actors::bus::EventLog;
use shop_actors::memory::MemoryPayments;
use shop_actors::model::{OrderEventType, OrderStatus, ProductSnapshot};
use shop_actors::{Core, CoreConfig, Decimal};

/// Fails the example with `what` unless `ok`.
fn check(ok: bool, what: String) -> Result<(), Box<dyn std::error::Error>> {
    if ok { Ok(()) } else { Err(what.into()) }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every third order is declined, so both outcomes show: carol's order (the third) is.
    let payments = Arc::new(MemoryPayments::new(3));
    let (core, bus) = Core::in_memory(CoreConfig::default(), payments.clone())?;
    let log = Arc::new(EventLog::default());
    bus.subscribe(log.clone());
    let carts = &core.cart.carts;

    let laptop = ProductSnapshot { id: 1, name: "Laptop".into(), price: Decimal::new(99999, 2) };
    let mouse = ProductSnapshot { id: 2, name: "Mouse".into(), price: Decimal::new(2999, 2) };
    for user in ["alice", "bob", "carol"] {
        carts.add(user, laptop.clone(), 1).await?;
        carts.add(user, mouse.clone(), 2).await?;
        let order = core.order.checkouts.checkout(user, None).await?;
        let cart = carts.get(user).await?;
        println!(
            "{user}: order {} {} total {} reason {:?}; cart now holds {} line(s)",
            order.id,
            order.status,
            order.total_amount,
            order.failure_reason,
            cart.items.len()
        );
        check(
            order.total_amount == Decimal::new(105997, 2),
            format!("{user}'s total: {}", order.total_amount),
        )?;
        let (status, lines) =
            if user == "carol" { (OrderStatus::Cancelled, 2) } else { (OrderStatus::Paid, 0) };
        check(order.status == status, format!("{user}'s order is {}, not {status}", order.status))?;
        check(
            cart.items.len() == lines,
            format!("{user}'s cart holds {} lines, not {lines}", cart.items.len()),
        )?;
        check(
            order.failure_reason.is_some() == (status == OrderStatus::Cancelled),
            format!("{user}'s failure reason: {:?}", order.failure_reason),
        )?;
    }
    let events = log.events();
    for event in &events {
        println!("event {:?} order {} for {}", event.event_type, event.order_id, event.username);
    }
    let count = |t: OrderEventType| events.iter().filter(|e| e.event_type == t).count();
    check(
        (
            count(OrderEventType::OrderCreated),
            count(OrderEventType::OrderCompleted),
            count(OrderEventType::OrderCancelled),
        ) == (3, 2, 1),
        format!("events: {events:?}"),
    )?;
    let stats = core.order.checkouts.stats();
    println!("payments recorded: {}; saga: {stats:?}", payments.count());
    check(payments.count() == 3 && (stats.paid, stats.cancelled) == (2, 1), format!("saga: {stats:?}"))?;
    core.shutdown();
    Ok(())
}
