//! Embeds the actor core with in-memory storage and runs checkouts: no HTTP, no database.
//!
//! `cargo run -p shop-actors --example embedded_checkout`

use std::sync::Arc;

use shop_actors::bus::EventLog;
use shop_actors::memory::MemoryPayments;
use shop_actors::model::ProductSnapshot;
use shop_actors::{Core, CoreConfig, Decimal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every third order is declined, so both outcomes show.
    let payments = Arc::new(MemoryPayments::new(3));
    let (core, bus) = Core::in_memory(CoreConfig::default(), payments.clone())?;
    let log = Arc::new(EventLog::default());
    bus.subscribe(log.clone());

    let laptop = ProductSnapshot { id: 1, name: "Laptop".into(), price: Decimal::new(99999, 2) };
    let mouse = ProductSnapshot { id: 2, name: "Mouse".into(), price: Decimal::new(2999, 2) };
    for user in ["alice", "bob", "carol"] {
        core.carts.add(user, laptop.clone(), 1).await?;
        core.carts.add(user, mouse.clone(), 2).await?;
        let order = core.checkouts.checkout(user, None).await?;
        let cart = core.carts.get(user).await?;
        println!(
            "{user}: order {} {} total {} reason {:?}; cart now holds {} line(s)",
            order.id,
            order.status,
            order.total_amount,
            order.failure_reason,
            cart.items.len()
        );
    }
    for event in log.events() {
        println!("event {:?} order {} for {}", event.event_type, event.order_id, event.username);
    }
    println!("payments recorded: {}; saga: {:?}", payments.count(), core.checkouts.stats());
    core.shutdown();
    Ok(())
}
