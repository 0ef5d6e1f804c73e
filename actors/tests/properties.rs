//! Property-based fuzzing of the actor core: random command sequences against the cart actor and
//! a reference model of its money and limits, random checkouts against the seed's invariants,
//! and random (concurrent) transitions against the order state machine.
//!
//! Each property tries 64 cases (`PROPTEST_CASES` overrides that). A failing case is shrunk and
//! written to `properties.proptest-regressions` beside this file: commit it, and the case is
//! tried first on every later run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use shop_actors::bus::EventLog;
use shop_actors::memory::MemoryPayments;
use shop_actors::model::{
    MAX_LINE_QUANTITY, NewOrder, OrderEventType, OrderItem, OrderStatus, ProductSnapshot, max_amount,
};
use shop_actors::{CartError, Core, CoreConfig, Decimal, OrderError, Transition};

/// `cases` cases (`PROPTEST_CASES` overrides it); failures kept in
/// `properties.proptest-regressions` beside this file.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

/// One core for all the cases of a property (each case has users of its own), and the runtime
/// its futures run on.
fn core(decline_every: i64) -> (tokio::runtime::Runtime, Core, Arc<EventLog>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (core, bus) = rt
        .block_on(async {
            Core::in_memory(CoreConfig::default(), Arc::new(MemoryPayments::new(decline_every)))
        })
        .expect("core starts");
    let log = Arc::new(EventLog::default());
    bus.subscribe(log.clone());
    (rt, core, log)
}

fn fresh_user(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Prices as a catalog can hold them: 0.01 to 99 999 999.99, skewed so that both small carts
/// and carts near the largest order come up.
fn price() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (1i64..=100_000).prop_map(|cents| Decimal::new(cents, 2)),
        (1i64..=9_999_999_999).prop_map(|cents| Decimal::new(cents, 2)),
        Just(max_amount()),
    ]
}

/// A small catalog, so that commands keep meeting the same lines.
fn catalog() -> impl Strategy<Value = Vec<ProductSnapshot>> {
    prop::collection::vec(price(), 1..=4).prop_map(|prices| {
        prices
            .into_iter()
            .enumerate()
            .map(|(i, price)| ProductSnapshot { id: i as i64 + 1, name: format!("P{}", i + 1), price })
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Command {
    Add { product: usize, quantity: u32 },
    Set { product: usize, quantity: u32 },
    Remove { product: usize },
    Clear,
}

fn quantity() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..=3, 1u32..=MAX_LINE_QUANTITY + 5, Just(MAX_LINE_QUANTITY), Just(u32::MAX)]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => (0usize..4, quantity()).prop_map(|(product, quantity)| Command::Add { product, quantity }),
        2 => (0usize..4, quantity()).prop_map(|(product, quantity)| Command::Set { product, quantity }),
        1 => (0usize..4).prop_map(|product| Command::Remove { product }),
        1 => Just(Command::Clear),
    ]
}

/// What the cart must be after each command: quantities per product, every line 1..=1000, the
/// total never past the largest order; a refused command changes nothing.
#[derive(Default)]
struct Model {
    lines: BTreeMap<i64, (Decimal, u32)>,
}

impl Model {
    fn total_of(lines: &BTreeMap<i64, (Decimal, u32)>) -> Decimal {
        lines.values().map(|(price, q)| price * Decimal::from(*q)).sum()
    }

    /// Applies the command; `Err` names the refusal the actor must give.
    fn apply(&mut self, catalog: &[ProductSnapshot], cmd: &Command) -> Result<(), &'static str> {
        let mut next = self.lines.clone();
        let within = |q: u64| (1..=u64::from(MAX_LINE_QUANTITY)).contains(&q);
        match *cmd {
            Command::Add { product, quantity } => {
                let p = catalog.get(product).ok_or("no such product in the catalog")?;
                if !within(u64::from(quantity)) {
                    return Err("quantity");
                }
                let had = next.get(&p.id).map_or(0, |(_, q)| u64::from(*q));
                if !within(had + u64::from(quantity)) {
                    return Err("quantity");
                }
                next.insert(p.id, (p.price, (had + u64::from(quantity)) as u32));
            }
            Command::Set { product, quantity } => {
                let id = product as i64 + 1;
                let Some(&(price, _)) = next.get(&id) else { return Err("not in cart") };
                if quantity == 0 {
                    next.remove(&id);
                } else if within(u64::from(quantity)) {
                    next.insert(id, (price, quantity));
                } else {
                    return Err("quantity");
                }
            }
            Command::Remove { product } => {
                next.remove(&(product as i64 + 1)).ok_or("not in cart")?;
            }
            Command::Clear => next.clear(),
        }
        if Self::total_of(&next) > max_amount() {
            return Err("total");
        }
        self.lines = next;
        Ok(())
    }
}

fn refusal(e: &CartError) -> &'static str {
    match e {
        CartError::QuantityOutOfRange(_) => "quantity",
        CartError::NotInCart(_) => "not in cart",
        CartError::TotalTooLarge(_) => "total",
        _ => "other",
    }
}

#[test]
fn the_cart_actor_keeps_money_and_limits_exactly_as_the_model_does() {
    let (rt, core, _) = core(0);
    let carts = &core.cart.carts;
    proptest!(config(64), |(catalog in catalog(), commands in prop::collection::vec(command(), 1..24))| {
        let user = fresh_user("cart");
        let mut model = Model::default();
        rt.block_on(async {
            for cmd in &commands {
                let expected = model.apply(&catalog, cmd);
                let got = match *cmd {
                    Command::Add { product, quantity } => match catalog.get(product) {
                        Some(p) => carts.add(&user, p.clone(), quantity).await,
                        None => continue,
                    },
                    Command::Set { product, quantity } => carts.set_quantity(&user, product as i64 + 1, quantity).await,
                    Command::Remove { product } => carts.remove(&user, product as i64 + 1).await,
                    Command::Clear => carts.clear(&user).await,
                };
                match (&expected, &got) {
                    (Ok(()), Ok(_)) => {}
                    (Err(want), Err(e)) => prop_assert_eq!(*want, refusal(e), "{:?} refused for another reason: {}", cmd, e),
                    _ => prop_assert!(false, "{:?}: model says {:?}, actor answered {:?}", cmd, expected, got),
                }
                let cart = carts.get(&user).await.expect("the cart reads back");
                let lines: BTreeMap<i64, (Decimal, u32)> =
                    cart.items.iter().map(|i| (i.product_id, (i.price, i.quantity))).collect();
                prop_assert_eq!(&lines, &model.lines, "after {:?}", cmd);
                prop_assert_eq!(cart.total(), Model::total_of(&model.lines));
                prop_assert!(cart.total() <= max_amount());
                prop_assert_eq!(cart.checked_total(), Some(cart.total()));
            }
            Ok::<(), TestCaseError>(())
        })?;
    });
    core.shutdown();
}

#[test]
fn a_checkout_charges_the_exact_total_and_ends_by_the_seeds_invariants() {
    // Every third order is declined: both outcomes come up.
    let (rt, core, log) = core(3);
    proptest!(config(64), |(lines in prop::collection::vec((1i64..=1_000_000, 1u32..=5), 1..5))| {
        let user = fresh_user("checkout");
        rt.block_on(async {
            let mut cents: i128 = 0;
            for (i, (price_cents, quantity)) in lines.iter().enumerate() {
                let product = ProductSnapshot { id: i as i64 + 1, name: format!("P{i}"), price: Decimal::new(*price_cents, 2) };
                core.cart.carts.add(&user, product, *quantity).await.expect("add");
                cents += i128::from(*price_cents) * i128::from(*quantity);
            }
            let order = core.order.checkouts.checkout(&user, None).await.expect("checkout answers");
            // Exact: the total is the sum of the lines to the cent, with two places.
            prop_assert_eq!(order.total_amount, Decimal::from_i128_with_scale(cents, 2));
            let after = core.cart.carts.get(&user).await.expect("cart");
            let outcomes: Vec<_> = log
                .events()
                .into_iter()
                .filter(|e| e.order_id == order.id && e.event_type != OrderEventType::OrderCreated)
                .map(|e| e.event_type)
                .collect();
            match order.status {
                OrderStatus::Paid => {
                    prop_assert!(order.payment_id.as_deref().is_some_and(|t| t.starts_with("TXN_")));
                    prop_assert!(after.items.is_empty(), "a paid checkout clears the cart");
                    prop_assert_eq!(outcomes, vec![OrderEventType::OrderCompleted]);
                }
                OrderStatus::Cancelled => {
                    prop_assert!(order.failure_reason.is_some());
                    prop_assert_eq!(after.items.len(), lines.len(), "a failed checkout keeps the cart");
                    prop_assert_eq!(outcomes, vec![OrderEventType::OrderCancelled]);
                }
                other => prop_assert!(false, "a checkout ended {}", other),
            }
            Ok::<(), TestCaseError>(())
        })?;
    });
    core.shutdown();
}

fn status() -> impl Strategy<Value = OrderStatus> {
    prop::sample::select(OrderStatus::ALL.to_vec())
}

#[test]
fn concurrent_transitions_follow_the_state_machine_and_publish_one_outcome() {
    let (rt, core, log) = core(0);
    let orders = &core.order.orders;
    proptest!(config(64), |(waves in prop::collection::vec(prop::collection::vec(status(), 1..4), 1..5))| {
        rt.block_on(async {
            let new = NewOrder {
                username: fresh_user("order"),
                items: vec![OrderItem { product_id: 1, product_name: "P".into(), price: Decimal::ONE, quantity: 1 }],
                total_amount: Decimal::ONE,
                idempotency_key: None,
                checkout_id: None,
                traceparent: None,
            };
            let order = orders.create(new).await.expect("create");
            let mut path = vec![OrderStatus::Pending];
            for wave in &waves {
                // Each wave's transitions race each other: the actor takes them one at a time.
                let answers =
                    futures::future::join_all(wave.iter().map(|to| orders.transition(order.id, Transition::to(*to)))).await;
                for (to, answer) in wave.iter().zip(answers) {
                    match answer {
                        Ok(o) => {
                            prop_assert_eq!(o.status, *to);
                            path.push(*to);
                        }
                        Err(OrderError::InvalidTransition { from, to: refused, .. }) => {
                            prop_assert_eq!(refused, *to);
                            prop_assert!(!from.can_become(*to), "{} -> {} was allowed but refused", from, to);
                        }
                        Err(e) => prop_assert!(false, "transition to {} failed: {}", to, e),
                    }
                }
            }
            // What was accepted is one walk of the machine from PENDING: nothing skipped, nothing
            // backwards, nothing after CANCELLED or DELIVERED.
            for step in path.windows(2) {
                prop_assert!(step[0].can_become(step[1]), "accepted {} -> {}", step[0], step[1]);
            }
            let last = *path.last().expect("PENDING at least");
            prop_assert_eq!(orders.get(order.id).await.expect("get").status, last);
            let outcome = match path.get(1) {
                Some(OrderStatus::Paid) => Some(OrderEventType::OrderCompleted),
                Some(OrderStatus::Cancelled) => Some(OrderEventType::OrderCancelled),
                _ => None,
            };
            // Whatever the outbox holds goes out now; the order's outcome must be there, once.
            core.order.outbox.flush(Duration::from_secs(30)).await.expect("the outbox relays");
            let published: Vec<_> = log
                .events()
                .into_iter()
                .filter(|e| e.order_id == order.id && e.event_type != OrderEventType::OrderCreated)
                .map(|e| e.event_type)
                .collect();
            prop_assert_eq!(published, outcome.into_iter().collect::<Vec<_>>());
            Ok::<(), TestCaseError>(())
        })?;
    });
    core.shutdown();
}
