//! One storage suite, run against both backends: SQLite (a fresh file per test) and MySQL (a
//! fresh database per test on the server the tests use; see `shop_services::testing`). If MySQL
//! is not reachable the MySQL half fails and says what to start.

use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use shop_actors::CartConfig;
use shop_actors::model::{
    Cart, CartItem, CheckoutHold, LineQuantity, NewOrder, OrderEvent, OrderEventType, OrderItem, OrderStatus,
    PaymentStatus, ProductSnapshot,
};
use shop_actors::ports::{Page, StoreError};
use shop_actors::runtime::ActorRuntime;
use shop_actors::{CartError, Carts, OrderError, Orders, Transition};
use shop_services::Service;
use shop_services::ServiceError;
use shop_services::auth::NewUserRow;
use shop_services::auth::Role;
use shop_services::payment::{NewPayment, PaymentChange};
use shop_services::product::{ProductInput, ProductService, Refusal, StockConfig, StockLedger};
use shop_services::storage::Database;
use shop_services::testing::{drop_mysql, fresh_mysql_url, open_or_explain};
use uuid::Uuid;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    MySql,
}

/// Fresh databases for one test; `open` again on the same service reaches the same database
/// through a new pool, as a second process would.
struct Fixture {
    backend: Backend,
    dir: tempfile::TempDir,
    urls: std::sync::Mutex<Vec<(Service, String)>>,
}

impl Fixture {
    fn new(backend: Backend) -> Self {
        Self { backend, dir: tempfile::tempdir().expect("temp dir"), urls: Default::default() }
    }

    fn url(&self, service: Service) -> String {
        let mut urls = self.urls.lock().expect("lock");
        if let Some((_, url)) = urls.iter().find(|(s, _)| *s == service) {
            return url.clone();
        }
        let url = match self.backend {
            Backend::Sqlite => {
                format!("sqlite://{}", self.dir.path().join(format!("{}.db", service.name())).display())
            }
            Backend::MySql => fresh_mysql_url(service),
        };
        urls.push((service, url.clone()));
        url
    }

    async fn open(&self, service: Service) -> Database {
        open_or_explain(service, &self.url(service)).await
    }

    async fn cleanup(self) {
        let urls = self.urls.lock().expect("lock").clone();
        if let Backend::MySql = self.backend {
            for (_, url) in urls {
                drop_mysql(&url).await;
            }
        }
    }
}

fn money(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn item(product_id: i64, quantity: u32) -> CartItem {
    let added_at = chrono::DateTime::from_timestamp_micros(1_780_000_000_123_456).expect("a time");
    CartItem { product_id, product_name: format!("p{product_id}"), price: money("19.99"), quantity, added_at }
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::Fixture::new(super::Backend::Sqlite)).await } )*
        }
        mod mysql {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::Fixture::new(super::Backend::MySql)).await } )*
        }
    };
}

on_both_backends!(
    users_are_unique_and_promotable,
    products_keep_money_exact_and_seed_once,
    cart_writes_are_fenced_by_version,
    a_hold_only_write_keeps_the_items_and_is_fenced,
    a_lines_write_changes_only_the_lines_named_and_is_fenced,
    a_completed_order_is_applied_to_a_cart_once,
    payments_are_one_per_order,
    orders_round_trip_with_their_items,
    order_writes_are_fenced_by_version,
    two_runtimes_adding_to_the_same_carts_lose_nothing,
    two_runtimes_racing_paid_and_cancelled_end_in_one_state,
    two_runtimes_hand_a_cart_to_one_checkout,
    a_lease_takes_out_the_paid_checkout_still_holding_the_cart,
    stock_reservations_are_all_or_nothing_idempotent_and_conserve_units,
    concurrent_reservations_of_the_last_units_succeed_as_often_as_there_are_units,
    an_outcome_event_ends_its_checkouts_reservation_once,
    stuck_checkouts_are_listed_and_leased_to_one_instance,
);

async fn users_are_unique_and_promotable(f: Fixture) {
    let users = f.open(Service::Auth).await.users();
    let row = |name: &'static str, email: &'static str| NewUserRow {
        username: name,
        email,
        password_hash: "$2b$04$hash",
        role: Role::User,
        created_at: shop_services::time::now(),
    };
    let ann = users.insert(row("ann", "ann@example.com")).await.expect("insert");
    assert!(matches!(users.insert(row("ann", "other@example.com")).await, Err(ServiceError::Conflict(_))));
    assert!(matches!(users.insert(row("bob", "ann@example.com")).await, Err(ServiceError::Conflict(_))));
    assert_eq!(users.find("ann").await.expect("find"), Some(ann.clone()));
    assert_eq!(users.credentials("ann").await.expect("creds"), Some(("$2b$04$hash".to_owned(), Role::User)));
    assert_eq!(users.credentials("nobody").await.expect("creds"), None);
    assert!(users.make_admin("ann", "$2b$04$new").await.expect("promote"));
    assert!(!users.make_admin("nobody", "$2b$04$new").await.expect("promote"));
    assert_eq!(users.credentials("ann").await.expect("creds"), Some(("$2b$04$new".to_owned(), Role::Admin)));
    f.cleanup().await;
}

async fn products_keep_money_exact_and_seed_once(f: Fixture) {
    let a = f.open(Service::Product).await.products();
    let b = f.open(Service::Product).await.products();
    let seed = shop_services::product::seed_catalog();
    let now = shop_services::time::now();
    let (x, y) = tokio::join!(a.seed_if_empty(&seed, now), b.seed_if_empty(&seed, now));
    assert_eq!(x.expect("seed") + y.expect("seed"), seed.len(), "two instances seeded once between them");
    assert_eq!(a.seed_if_empty(&seed, now).await.expect("seed"), 0);
    let all = a.list(Page::first(100)).await.expect("list");
    assert_eq!(all.len(), seed.len());
    // Pages in id order, going on from the last id seen.
    let two = a.list(Page::first(2)).await.expect("first page");
    assert_eq!(two, all[..2]);
    let rest = a.list(Page { after: Some(two[1].id), limit: 100 }).await.expect("next page");
    assert_eq!(rest, all[2..]);
    assert_eq!((all[0].name.as_str(), all[0].price.to_string()), ("Laptop", "999.99".to_owned()));

    let input = |price: &str, stock: i64| ProductInput {
        name: "Cable".into(),
        description: None,
        price: money(price),
        stock,
    };
    let cable = a.create(&input("0.01", 3), now).await.expect("create");
    assert_eq!(b.get(cable.id).await.expect("get"), Some(cable.clone()));
    let updated = a.update(cable.id, &input("99999999.99", 0), now).await.expect("update").expect("exists");
    assert_eq!(updated.price.to_string(), "99999999.99");
    assert_eq!(b.get(cable.id).await.expect("get").map(|p| p.price), Some(money("99999999.99")));
    assert_eq!(a.update(424242, &input("1.00", 1), now).await.expect("update"), None);
    assert!(a.delete(cable.id).await.expect("delete"));
    assert!(!a.delete(cable.id).await.expect("delete"));
    assert!(a.negative_stock().await.expect("stock").is_empty());
    f.cleanup().await;
}

async fn cart_writes_are_fenced_by_version(f: Fixture) {
    let carts = f.open(Service::Cart).await.carts();
    let mut cart = carts.load("cy").await.expect("load");
    assert_eq!(cart, Cart::empty("cy"));
    cart.items = vec![item(3, 1), item(1, 2)];
    assert_eq!(carts.save(&cart, None).await, Ok(1));
    // A second writer that also started from version 0 is refused.
    assert!(matches!(carts.save(&cart, None).await, Err(StoreError::Conflict(_))));
    let mut stored = carts.load("cy").await.expect("load");
    assert_eq!(
        (stored.version, stored.items.clone()),
        (1, vec![item(3, 1), item(1, 2)]),
        "items keep their order"
    );
    stored.items[1].quantity = 5;
    assert_eq!(carts.save(&stored, None).await, Ok(2));
    stored.items.clear();
    assert!(
        matches!(carts.save(&stored, None).await, Err(StoreError::Conflict(_))),
        "version 1 is stale now"
    );
    let now = carts.load("cy").await.expect("load");
    assert_eq!((now.version, now.items[1].quantity), (2, 5));
    assert_eq!(now.items[1].price, money("19.99"));
    f.cleanup().await;
}

async fn a_hold_only_write_keeps_the_items_and_is_fenced(f: Fixture) {
    let carts = f.open(Service::Cart).await.carts();
    let mut cart = Cart::empty("hy");
    cart.items = vec![item(4, 2)];
    assert_eq!(carts.save(&cart, None).await, Ok(1));
    let mut held = carts.load("hy").await.expect("load");
    let hold = CheckoutHold {
        id: uuid::Uuid::new_v4(),
        expires_at: shop_services::time::now() + chrono::Duration::seconds(60),
    };
    held.checkout = Some(hold);
    // The items passed along are not written: only the row's hold and version.
    held.items.clear();
    assert_eq!(carts.save_hold(&held).await, Ok(2));
    let stored = carts.load("hy").await.expect("load");
    assert_eq!((stored.version, stored.checkout, stored.items.clone()), (2, Some(hold), vec![item(4, 2)]));
    assert!(matches!(carts.save_hold(&held).await, Err(StoreError::Conflict(_))), "version 1 is stale now");
    let mut released = stored;
    released.checkout = None;
    assert_eq!(carts.save_hold(&released).await, Ok(3));
    assert_eq!(carts.load("hy").await.expect("load").checkout, None);
    f.cleanup().await;
}

async fn a_lines_write_changes_only_the_lines_named_and_is_fenced(f: Fixture) {
    let carts = f.open(Service::Cart).await.carts();
    let mut cart = Cart::empty("ly");
    cart.items = vec![item(1, 1), item(2, 2)];
    // A cart not stored yet is written whole, whatever lines are named.
    cart.version = carts.save_lines(&cart, &[2], None).await.expect("first write");
    assert_eq!(carts.load("ly").await.expect("load").items, vec![item(1, 1), item(2, 2)]);
    // Line 2 changed, line 3 added, line 1 gone; only 2 and 3 named: line 1 stays stored.
    cart.items = vec![item(2, 5), item(3, 1)];
    cart.version = carts.save_lines(&cart, &[2, 3], None).await.expect("lines");
    let stored = carts.load("ly").await.expect("load");
    assert_eq!((stored.version, stored.items.clone()), (2, vec![item(1, 1), item(2, 5), item(3, 1)]));
    // A named line the cart no longer has is deleted; with an applied order, both in one write.
    let mut cart = stored;
    cart.items.retain(|i| i.product_id != 2);
    cart.version = carts.save_lines(&cart, &[2], Some(88)).await.expect("lines");
    let stored = carts.load("ly").await.expect("load");
    assert_eq!((stored.version, stored.items.clone()), (3, vec![item(1, 1), item(3, 1)]));
    assert!(carts.checkout_applied("ly", 88).await.expect("applied").is_some());
    let mut stale = stored.clone();
    stale.version = 2;
    stale.items.clear();
    assert!(matches!(carts.save_lines(&stale, &[1, 3], None).await, Err(StoreError::Conflict(_))), "fenced");
    assert!(
        matches!(carts.save_lines(&stored, &[1], Some(88)).await, Err(StoreError::Conflict(_))),
        "an order is applied once"
    );
    assert_eq!(carts.load("ly").await.expect("load"), stored, "the refused writes changed nothing");
    f.cleanup().await;
}

async fn a_completed_order_is_applied_to_a_cart_once(f: Fixture) {
    let carts = f.open(Service::Cart).await.carts();
    let mut cart = Cart::empty("di");
    cart.items = vec![item(1, 1)];
    cart.version = carts.save(&cart, None).await.expect("save");
    assert_eq!(carts.checkout_applied("di", 77).await.expect("applied"), None);
    cart.items.clear();
    let before = chrono::Utc::now();
    cart.version = carts.save(&cart, Some(77)).await.expect("apply");
    let at = carts.checkout_applied("di", 77).await.expect("applied").expect("applied at a time");
    assert!(at >= before - chrono::Duration::milliseconds(1) && at <= chrono::Utc::now(), "{at} vs {before}");
    assert_eq!(carts.checkout_applied("other", 77).await.expect("applied"), None);
    assert!(matches!(carts.save(&cart, Some(77)).await, Err(StoreError::Conflict(_))), "applied twice");
    assert_eq!(carts.load("di").await.expect("load").version, 2, "the refused write changed nothing");
    f.cleanup().await;
}

async fn payments_are_one_per_order(f: Fixture) {
    let a = f.open(Service::Payment).await.payments();
    let b = f.open(Service::Payment).await.payments();
    let new = |reason: Option<&'static str>| NewPayment {
        order_id: 5,
        user_id: "eve",
        amount: money("2089.95"),
        status: if reason.is_some() { PaymentStatus::Failed } else { PaymentStatus::Pending },
        failure_reason: reason,
        created_at: shop_services::time::now(),
    };
    let (x, y) = tokio::join!(a.insert(new(None)), b.insert(new(Some("Card declined"))));
    let (x, y) = (x.expect("insert"), y.expect("insert"));
    assert!(x.is_some() != y.is_some(), "exactly one of two concurrent payments for one order is recorded");
    let recorded = x.or(y).expect("one");
    assert_eq!(a.find_by_order(5).await.expect("find"), Some(recorded.clone()));
    assert_eq!(recorded.amount.to_string(), "2089.95");
    assert_eq!(a.find_by_order(6).await.expect("find"), None);
    let summaries = b.summaries().await.expect("summaries");
    assert_eq!(summaries.len(), 1);
    assert_eq!((summaries[0].order_id, summaries[0].amount), (5, money("2089.95")));

    // A PENDING payment moves on once, compare-and-set: the second mover finds it gone.
    let pending = NewPayment { order_id: 6, ..new(None) };
    let pending = a.insert(pending).await.expect("insert").expect("recorded");
    assert_eq!(pending.status, PaymentStatus::Pending);
    let change = |status, txn: Option<&str>| PaymentChange {
        status,
        transaction_id: txn.map(str::to_owned),
        gateway_response: Some(r#"{"status":"APPROVED"}"#.into()),
        failure_reason: None,
        refunded_at: None,
        refund_reason: None,
        at: shop_services::time::now(),
    };
    let (x, y) = tokio::join!(
        a.update(&pending, change(PaymentStatus::Success, Some("TXN_ABC123"))),
        b.update(&pending, change(PaymentStatus::Failed, None)),
    );
    let (x, y) = (x.expect("update"), y.expect("update"));
    assert!(x.is_some() != y.is_some(), "one of two movers wins: {x:?} {y:?}");
    let moved = x.or(y).expect("one");
    assert_eq!(moved.gateway_response.as_deref(), Some(r#"{"status":"APPROVED"}"#));
    // The row the update answers (computed by MySQL's store, returned by SQLite's) is the row
    // stored.
    assert_eq!(b.find_by_order(6).await.expect("find"), Some(moved.clone()));
    if moved.status == PaymentStatus::Success {
        let refunded_at = shop_services::time::now();
        let refund = PaymentChange {
            refunded_at: Some(refunded_at),
            refund_reason: Some("Payment service unavailable".into()),
            gateway_response: Some(r#"{"status":"REFUNDED"}"#.into()),
            ..change(PaymentStatus::Refunded, None)
        };
        let refunded = a.update(&moved, refund).await.expect("refund").expect("refunded");
        assert_eq!(b.find_by_order(6).await.expect("find"), Some(refunded.clone()));
        assert_eq!(refunded.status, PaymentStatus::Refunded);
        assert_eq!(
            refunded.transaction_id.as_deref(),
            Some("TXN_ABC123"),
            "the refund keeps the transaction"
        );
        assert_eq!(refunded.refunded_at, Some(refunded_at));
    }
    f.cleanup().await;
}

fn new_order(username: &str, key: Option<&str>) -> NewOrder {
    NewOrder {
        username: username.into(),
        items: vec![
            OrderItem { product_id: 1, product_name: "Laptop".into(), price: money("999.99"), quantity: 2 },
            OrderItem { product_id: 2, product_name: "Mouse".into(), price: money("29.99"), quantity: 3 },
        ],
        total_amount: money("2089.95"),
        idempotency_key: key.map(str::to_owned),
        checkout_id: None,
        traceparent: None,
    }
}

async fn orders_round_trip_with_their_items(f: Fixture) {
    let orders = f.open(Service::Order).await.orders();
    let first = orders.create(new_order("fay", Some("k1"))).await.expect("create");
    let second = orders.create(new_order("fay", None)).await.expect("create");
    orders.create(new_order("gus", Some("k1"))).await.expect("the same key for another user is fine");
    assert!(matches!(orders.create(new_order("fay", Some("k1"))).await, Err(StoreError::Duplicate(_))));
    assert_eq!((first.status, first.version), (OrderStatus::Pending, 1));

    let loaded = orders.load(first.id).await.expect("load").expect("exists");
    assert_eq!(loaded, first);
    assert_eq!(orders.find_by_idempotency_key("fay", "k1").await.expect("find"), Some(first.clone()));
    assert_eq!(orders.find_by_idempotency_key("fay", "k2").await.expect("find"), None);
    let mine = orders.list_for_user("fay", Page::first(100)).await.expect("list");
    assert_eq!(mine.iter().map(|o| o.id).collect::<Vec<_>>(), vec![second.id, first.id], "newest first");
    assert!(mine.iter().all(|o| o.items.len() == 2 && o.items[0].product_name == "Laptop"));
    // Pages count orders, not their item rows, and go on from the last id seen.
    let newest = orders.list_for_user("fay", Page::first(1)).await.expect("first page");
    assert_eq!(newest, mine[..1], "the newest order, with both its items");
    let older =
        orders.list_for_user("fay", Page { after: Some(second.id), limit: 1 }).await.expect("next page");
    assert_eq!(older, mine[1..], "the order older than the cursor");
    let past =
        orders.list_for_user("fay", Page { after: Some(first.id), limit: 1 }).await.expect("last page");
    assert!(past.is_empty(), "nothing older than the oldest");
    assert_eq!(orders.load(424242).await.expect("load"), None);
    f.cleanup().await;
}

async fn order_writes_are_fenced_by_version(f: Fixture) {
    let orders = f.open(Service::Order).await.orders();
    let order = orders.create(new_order("hal", None)).await.expect("create");
    let mut paid = order.clone();
    paid.status = OrderStatus::Paid;
    paid.payment_id = Some("TXN_ABC123".into());
    let completed = OrderEvent::outcome(&paid, None).expect("an outcome event");
    assert_eq!(orders.update(&paid, Some(&completed)).await, Ok(2));
    let mut cancelled = order.clone();
    cancelled.status = OrderStatus::Cancelled;
    let refused = OrderEvent::outcome(&cancelled, None).expect("an outcome event");
    assert!(matches!(orders.update(&cancelled, Some(&refused)).await, Err(StoreError::Conflict(_))));

    // The outbox holds exactly the events of stored changes, oldest first, until marked sent.
    let unsent = orders.unsent_events(10).await.expect("outbox");
    let kinds: Vec<_> = unsent.iter().map(|e| (e.event_type.clone(), e.order_id)).collect();
    assert_eq!(
        kinds,
        vec![(OrderEventType::OrderCreated, order.id), (OrderEventType::OrderCompleted, order.id)]
    );
    assert_eq!(unsent[1], completed, "the event round-trips unchanged");
    orders.mark_sent(&[unsent[0].event_id]).await.expect("mark");
    assert_eq!(orders.unsent_events(10).await.expect("outbox"), vec![completed.clone()]);
    orders.mark_sent(&[completed.event_id]).await.expect("mark");
    assert!(orders.unsent_events(10).await.expect("outbox").is_empty());
    let stored = orders.load(order.id).await.expect("load").expect("exists");
    assert_eq!(
        (stored.status, stored.payment_id.as_deref(), stored.version),
        (OrderStatus::Paid, Some("TXN_ABC123"), 2)
    );
    let summaries = orders.summaries().await.expect("summaries");
    assert_eq!(summaries.len(), 1);
    assert_eq!((summaries[0].status.as_str(), summaries[0].total_amount), ("PAID", money("2089.95")));
    f.cleanup().await;
}

/// Two actor runtimes, as two instances of the Cart service would be, on one database.
async fn two_runtimes_adding_to_the_same_carts_lose_nothing(f: Fixture) {
    const ADDS_PER_INSTANCE: usize = 500;
    const CARTS: usize = 20;
    let mut instances = Vec::new();
    for _ in 0..2 {
        let db = f.open(Service::Cart).await;
        let runtime = Arc::new(ActorRuntime::start(2).expect("runtime"));
        instances.push((Carts::new(runtime.clone(), db.carts(), CartConfig::default()), runtime));
    }
    let product =
        |i: usize| ProductSnapshot { id: (i % 3) as i64 + 1, name: "p".into(), price: money("1.50") };
    let mut tasks = Vec::new();
    for (carts, _) in &instances {
        // 25 workers per instance, each adding to every cart in turn.
        for worker in 0..25 {
            let carts = carts.clone();
            tasks.push(tokio::spawn(async move {
                let mut refused = 0;
                for n in 0..ADDS_PER_INSTANCE / 25 {
                    let i = worker * (ADDS_PER_INSTANCE / 25) + n;
                    let user = format!("user{}", i % CARTS);
                    // A refused add (the conflict outlasted the retries) is what a client sees as
                    // 503; it retries, as a client would, for a while.
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                    loop {
                        match carts.add(&user, product(i), 1).await {
                            Ok(_) => break,
                            Err(CartError::Store(StoreError::Conflict(_))) => refused += 1,
                            Err(e) => panic!("add failed: {e}"),
                        }
                        assert!(std::time::Instant::now() < deadline, "an add kept conflicting for 60 s");
                    }
                }
                refused
            }));
        }
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.expect("task");
    }
    let store = f.open(Service::Cart).await.carts();
    let mut total = 0;
    for c in 0..CARTS {
        let cart = store.load(&format!("user{c}")).await.expect("load");
        let quantity: u32 = cart.items.iter().map(|i| i.quantity).sum();
        assert_eq!(quantity as usize, 2 * ADDS_PER_INSTANCE / CARTS, "cart user{c}: {cart:?}");
        assert_eq!(cart.version as usize, 2 * ADDS_PER_INSTANCE / CARTS, "one stored write per add");
        total += quantity;
    }
    assert_eq!(total as usize, 2 * ADDS_PER_INSTANCE);
    eprintln!("{:?}: adds refused after retries and re-sent: {refused}", f.backend);
    for (_, runtime) in instances {
        runtime.shutdown();
    }
    f.cleanup().await;
}

async fn two_runtimes_racing_paid_and_cancelled_end_in_one_state(f: Fixture) {
    const ORDERS: usize = 40;
    let mut instances = Vec::new();
    for _ in 0..2 {
        let db = f.open(Service::Order).await;
        let runtime = Arc::new(ActorRuntime::start(2).expect("runtime"));
        instances.push((Orders::new(runtime.clone(), db.orders(), Default::default()), runtime));
    }
    let store = f.open(Service::Order).await.orders();
    let mut ids = Vec::new();
    for _ in 0..ORDERS {
        ids.push(store.create(new_order("ivy", None)).await.expect("create").id);
    }
    let race = ids.iter().map(|&id| {
        let (a, b) = (instances[0].0.clone(), instances[1].0.clone());
        async move {
            let (paid, cancelled) = tokio::join!(
                a.transition(
                    id,
                    Transition { payment_id: Some(format!("TXN_{id}")), ..Transition::to(OrderStatus::Paid) }
                ),
                b.transition(
                    id,
                    Transition {
                        failure_reason: Some("Card declined".into()),
                        ..Transition::to(OrderStatus::Cancelled)
                    },
                ),
            );
            (id, paid, cancelled)
        }
    });
    for (id, paid, cancelled) in futures::future::join_all(race).await {
        let winner = match (&paid, &cancelled) {
            (Ok(_), Err(OrderError::InvalidTransition { .. })) => OrderStatus::Paid,
            (Err(OrderError::InvalidTransition { .. }), Ok(_)) => OrderStatus::Cancelled,
            other => panic!("order {id}: exactly one transition must win, got {other:?}"),
        };
        let stored = store.load(id).await.expect("load").expect("exists");
        assert_eq!(stored.status, winner, "order {id}");
        assert_eq!(stored.version, 2, "order {id} was written once");
        let announced: Vec<_> = store
            .unsent_events(1000)
            .await
            .expect("outbox")
            .into_iter()
            .filter(|e| e.order_id == id && e.event_type != OrderEventType::OrderCreated)
            .map(|e| e.event_type)
            .collect();
        let expected = if winner == OrderStatus::Paid {
            OrderEventType::OrderCompleted
        } else {
            OrderEventType::OrderCancelled
        };
        assert_eq!(announced, vec![expected], "order {id}: only the winner's event is in the outbox");
    }
    for (_, runtime) in instances {
        runtime.shutdown();
    }
    f.cleanup().await;
}

/// The checkout hold is stored with the cart: two instances asked at once to begin a checkout
/// of the same cart grant it once.
async fn two_runtimes_hand_a_cart_to_one_checkout(f: Fixture) {
    use shop_actors::ports::{CartPort, CartPortError};
    let mut instances = Vec::new();
    for _ in 0..2 {
        let db = f.open(Service::Cart).await;
        let runtime = Arc::new(ActorRuntime::start(2).expect("runtime"));
        instances.push((Carts::new(runtime.clone(), db.carts(), CartConfig::default()), runtime));
    }
    let (a, b) = (&instances[0].0, &instances[1].0);
    for round in 0..10 {
        let user = format!("jo{round}");
        a.add(&user, ProductSnapshot { id: 1, name: "p".into(), price: money("2.00") }, 1)
            .await
            .expect("add");
        b.get(&user).await.expect("b caches the cart");
        let (x, y) = tokio::join!(a.begin_checkout(&user, None), b.begin_checkout(&user, None));
        let granted = match (&x, &y) {
            (Ok(lease), Err(CartPortError::CheckoutInProgress))
            | (Err(CartPortError::CheckoutInProgress), Ok(lease)) => lease.clone(),
            other => panic!("round {round}: exactly one checkout must hold the cart, got {other:?}"),
        };
        // Released by the instance that did not grant it: the hold is shared state.
        let other = if x.is_ok() { b } else { a };
        other.release_checkout(&user, granted.checkout_id).await.expect("release");
        a.begin_checkout(&user, None).await.expect("free again after the release");
    }
    for (_, runtime) in instances {
        runtime.shutdown();
    }
    f.cleanup().await;
}

/// A lease handed the user's PAID checkout before, while that checkout still holds the cart,
/// takes its items out in the same write as the new hold, on another instance than the one that
/// granted the first hold; the event, arriving afterwards at the first instance (whose cache is
/// stale), changes nothing. A checkout that does not hold the cart is not applied.
async fn a_lease_takes_out_the_paid_checkout_still_holding_the_cart(f: Fixture) {
    use shop_actors::ports::{CartPort, CartPortError, CompletedCheckout, EventHandler};
    let runtime = Arc::new(ActorRuntime::start(2).expect("runtime"));
    let a = Carts::new(runtime.clone(), f.open(Service::Cart).await.carts(), CartConfig::default());
    let b = Carts::new(runtime.clone(), f.open(Service::Cart).await.carts(), CartConfig::default());
    let p = |id| ProductSnapshot { id, name: format!("p{id}"), price: money("2.00") };
    a.add("lu", p(1), 2).await.expect("add");
    let first = a.begin_checkout("lu", None).await.expect("lease");
    // Added while the first checkout runs; then it is PAID for product 1 only.
    a.add("lu", p(2), 1).await.expect("add");
    a.add("lu", p(1), 3).await.expect("add");
    let paid = CompletedCheckout { order_id: 41, checkout_id: first.checkout_id, items: vec![line(1, 2)] };

    let stranger = CompletedCheckout { checkout_id: Uuid::new_v4(), ..paid.clone() };
    assert_eq!(b.begin_checkout("lu", Some(stranger)).await, Err(CartPortError::CheckoutInProgress));
    assert_eq!(b.get("lu").await.expect("get").items.len(), 2, "a refused lease took nothing out");

    let second = b.begin_checkout("lu", Some(paid)).await.expect("the next checkout is not refused");
    let leased: Vec<_> = second.items.iter().map(|i| (i.product_id, i.quantity)).collect();
    assert_eq!(leased, vec![(1, 3), (2, 1)], "the paid units left the cart before the lease");
    let stored = f.open(Service::Cart).await.carts();
    assert!(stored.checkout_applied("lu", 41).await.expect("applied").is_some(), "recorded as applied");
    let cart = stored.load("lu").await.expect("load");
    assert_eq!(cart.checkout.map(|h| h.id), Some(second.checkout_id), "held by the new checkout");

    let event = OrderEvent {
        event_type: OrderEventType::OrderCompleted,
        username: "lu".into(),
        order_id: 41,
        reason: None,
        event_id: Uuid::new_v4(),
        occurred_at: chrono::Utc::now(),
        items: vec![line(1, 2)],
        checkout_id: Some(first.checkout_id),
        traceparent: None,
    };
    a.handle(&event).await.expect("the event, late, on the instance that granted the first hold");
    let after = stored.load("lu").await.expect("load");
    assert_eq!((after.items.clone(), after.checkout), (cart.items.clone(), cart.checkout), "changed nothing");
    runtime.shutdown();
    f.cleanup().await;
}

fn line(product_id: i64, quantity: u32) -> LineQuantity {
    LineQuantity { product_id, quantity }
}

fn conserved(ledger: &[StockLedger]) {
    for l in ledger {
        assert_eq!(l.units_stocked, l.stock + l.reserved + l.sold, "units are conserved: {l:?}");
    }
}

async fn stock_reservations_are_all_or_nothing_idempotent_and_conserve_units(f: Fixture) {
    let products = f.open(Service::Product).await.products();
    let now = shop_services::time::now();
    let input = |name: &str, stock: i64| ProductInput {
        name: name.into(),
        description: None,
        price: money("5.00"),
        stock,
    };
    let a = products.create(&input("A", 10), now).await.expect("create");
    let b = products.create(&input("B", 1), now).await.expect("create");
    let stock = |id: i64| {
        let products = products.clone();
        async move { products.get(id).await.expect("get").expect("exists").stock }
    };
    let later = now + chrono::Duration::minutes(15);
    let (c1, c2, c3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());

    assert_eq!(
        products.reserve(c1, &[line(a.id, 3), line(b.id, 1)], later, now).await.expect("reserve"),
        Ok(())
    );
    assert_eq!((stock(a.id).await, stock(b.id).await), (7, 0));
    assert_eq!(
        products.reserve(c1, &[line(a.id, 3), line(b.id, 1)], later, now).await.expect("again"),
        Ok(())
    );
    assert_eq!(stock(a.id).await, 7, "asking again for one checkout takes nothing more");

    let refused = products.reserve(c2, &[line(a.id, 2), line(b.id, 1)], later, now).await.expect("reserve");
    let Err(Refusal::Insufficient(shortage)) = refused else { panic!("{refused:?}") };
    assert_eq!((shortage.product_id, shortage.product_name.as_str(), shortage.available), (b.id, "B", 0));
    assert_eq!(stock(a.id).await, 7, "all or nothing: the line that fitted was not taken");
    let unknown = products.reserve(c2, &[line(424242, 1)], later, now).await.expect("reserve");
    assert_eq!(unknown, Err(Refusal::UnknownProduct(424242)));

    assert_eq!(products.release_reservation(c1, now).await.expect("release"), 2);
    assert_eq!(products.release_reservation(c1, now).await.expect("release"), 0, "released once");
    assert_eq!((stock(a.id).await, stock(b.id).await), (10, 1));

    products.reserve(c2, &[line(a.id, 4)], later, now).await.expect("reserve").expect("reserved");
    assert_eq!(products.commit_reservation(c2, now).await.expect("commit"), Ok(()));
    assert_eq!(products.commit_reservation(c2, now).await.expect("commit"), Ok(()), "committed once");
    assert_eq!(products.release_reservation(c2, now).await.expect("release"), 0, "sold units stay sold");
    assert_eq!(stock(a.id).await, 6);

    // An admin putting 20 on hand changes the units stocked by the difference.
    products.update(a.id, &input("A", 20), now).await.expect("update").expect("exists");
    let ledger = products.stock_ledger().await.expect("ledger");
    conserved(&ledger);
    let la = ledger.iter().find(|l| l.product_id == a.id).expect("A");
    assert_eq!((la.units_stocked, la.stock, la.reserved, la.sold), (24, 20, 0, 4));

    // A reservation past its TTL is found and, released, gives its units back.
    let past = now - chrono::Duration::seconds(1);
    products.reserve(c3, &[line(a.id, 5)], past, now).await.expect("reserve").expect("reserved");
    assert_eq!(products.expired_reservations(now, 10).await.expect("expired"), vec![c3]);
    assert_eq!(products.release_reservation(c3, now).await.expect("release"), 1);
    assert!(products.expired_reservations(now, 10).await.expect("expired").is_empty());
    assert_eq!(stock(a.id).await, 20);
    let statuses: Vec<(Uuid, String)> = products
        .reservations()
        .await
        .expect("reservations")
        .into_iter()
        .map(|r| (r.checkout_id, r.status))
        .collect();
    assert!(
        statuses.contains(&(c2, "COMMITTED".into())) && statuses.contains(&(c3, "RELEASED".into())),
        "{statuses:?}"
    );
    conserved(&products.stock_ledger().await.expect("ledger"));

    // A released reservation is not made again under its checkout, and takes nothing.
    assert!(products.reserve(c1, &[line(a.id, 3)], later, now).await.is_err(), "released for good");
    assert_eq!(stock(a.id).await, 20);
    // Committed after its TTL released it (the order was paid late): its units are taken again.
    assert_eq!(products.commit_reservation(c3, now).await.expect("commit"), Ok(()));
    assert_eq!(stock(a.id).await, 15);
    let c3_status =
        products.reservations().await.expect("reservations").into_iter().find(|r| r.checkout_id == c3);
    assert_eq!(c3_status.map(|r| r.status), Some("COMMITTED".to_owned()));
    conserved(&products.stock_ledger().await.expect("ledger"));
    f.cleanup().await;
}

/// Distributed mode: the Product service commits or releases a reservation when the outcome's
/// event reaches it, and a redelivered event changes nothing.
async fn an_outcome_event_ends_its_checkouts_reservation_once(f: Fixture) {
    use shop_actors::ports::EventHandler;
    let store = f.open(Service::Product).await.products();
    let service = ProductService::new(store.clone(), StockConfig::default());
    let now = shop_services::time::now();
    let input = ProductInput { name: "Kettle".into(), description: None, price: money("30.00"), stock: 10 };
    let p = store.create(&input, now).await.expect("create");
    let (paid, cancelled) = (Uuid::new_v4(), Uuid::new_v4());
    for checkout in [paid, cancelled] {
        service.reserve(checkout, &[line(p.id, 3)]).await.expect("reserve").expect("reserved");
    }
    let event = |event_type, checkout| {
        let new = NewOrder {
            items: vec![OrderItem {
                product_id: p.id,
                product_name: "Kettle".into(),
                price: money("30.00"),
                quantity: 3,
            }],
            total_amount: money("90.00"),
            checkout_id: Some(checkout),
            ..new_order("ev", None)
        };
        OrderEvent::new(event_type, &shop_actors::model::Order::created(1, new, now), Some(checkout))
    };
    let status = |checkout: Uuid| {
        let store = store.clone();
        async move {
            store
                .reservations()
                .await
                .expect("reservations")
                .into_iter()
                .find(|r| r.checkout_id == checkout)
                .map(|r| r.status)
        }
    };
    for _ in 0..2 {
        service.handle(&event(OrderEventType::OrderCompleted, paid)).await.expect("completed");
        service.handle(&event(OrderEventType::OrderCancelled, cancelled)).await.expect("cancelled");
        service.handle(&event(OrderEventType::OrderCreated, Uuid::new_v4())).await.expect("created");
    }
    assert_eq!(status(paid).await.as_deref(), Some("COMMITTED"));
    assert_eq!(status(cancelled).await.as_deref(), Some("RELEASED"));
    let ledger = store.stock_ledger().await.expect("ledger");
    conserved(&ledger);
    let l = ledger.iter().find(|l| l.product_id == p.id).expect("kettle");
    assert_eq!((l.stock, l.reserved, l.sold), (7, 0, 3), "three sold, three back on hand, once each");
    f.cleanup().await;
}

async fn concurrent_reservations_of_the_last_units_succeed_as_often_as_there_are_units(f: Fixture) {
    let (x, y) = (f.open(Service::Product).await.products(), f.open(Service::Product).await.products());
    let now = shop_services::time::now();
    let input = ProductInput { name: "Last".into(), description: None, price: money("1.00"), stock: 10 };
    let p = x.create(&input, now).await.expect("create");
    let later = now + chrono::Duration::minutes(15);
    let tries = (0..40).map(|i| {
        let store = if i % 2 == 0 { x.clone() } else { y.clone() };
        async move { store.reserve(Uuid::new_v4(), &[line(p.id, 1)], later, now).await.expect("reserve") }
    });
    let results = futures::future::join_all(tries).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(()) | Err(Refusal::Insufficient(_)))));
    assert_eq!(x.get(p.id).await.expect("get").expect("exists").stock, 0);
    conserved(&x.stock_ledger().await.expect("ledger"));
    f.cleanup().await;
}

async fn stuck_checkouts_are_listed_and_leased_to_one_instance(f: Fixture) {
    let (a, b) = (f.open(Service::Order).await.orders(), f.open(Service::Order).await.orders());
    let order = a.create(new_order("stuck", None)).await.expect("create");
    let soon = shop_services::time::now() + chrono::Duration::seconds(1);
    let long_ago = shop_services::time::now() - chrono::Duration::hours(1);
    assert_eq!(
        b.unfinished(soon, 10).await.expect("list").iter().map(|o| o.id).collect::<Vec<_>>(),
        [order.id]
    );
    assert!(b.unfinished(long_ago, 10).await.expect("list").is_empty(), "younger than the threshold");

    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    let lease = shop_services::time::now() + chrono::Duration::minutes(1);
    let (x, y) = tokio::join!(a.claim_recovery(order.id, one, lease), b.claim_recovery(order.id, two, lease));
    assert!(x.expect("claim") != y.expect("claim"), "exactly one instance takes the order");
    let holder = if a.claim_recovery(order.id, one, lease).await.expect("claim") { one } else { two };
    let other = if holder == one { two } else { one };
    assert!(!b.claim_recovery(order.id, other, lease).await.expect("claim"), "held");
    assert!(b.claim_recovery(order.id, holder, lease).await.expect("claim"), "renewed by its holder");
    let expired = shop_services::time::now() - chrono::Duration::seconds(1);
    assert!(a.claim_recovery(order.id, holder, expired).await.expect("claim"));
    assert!(b.claim_recovery(order.id, other, lease).await.expect("claim"), "an expired lease is free");

    // An outcome whose later steps are open stays listed until they are done.
    let mut paid = order.clone();
    paid.status = OrderStatus::Paid;
    paid.unsettled = true;
    assert_eq!(a.update(&paid, None).await, Ok(2));
    assert_eq!(b.unfinished(soon, 10).await.expect("list").len(), 1);
    let stored = b.load(order.id).await.expect("load").expect("exists");
    assert!(stored.unsettled);
    let settled = shop_actors::model::Order { unsettled: false, version: 2, ..paid };
    assert_eq!(a.update(&settled, None).await, Ok(3));
    assert!(b.unfinished(soon, 10).await.expect("list").is_empty());

    let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(a.claim_relay(r1, lease).await.expect("relay"));
    assert!(!b.claim_relay(r2, lease).await.expect("relay"), "one relay at a time");
    assert!(b.claim_relay(r1, lease).await.expect("relay"), "renewed by its holder");
    f.cleanup().await;
}

// ---------------------------------------------------------------------- the seed's schema

/// The seed's `CREATE TABLE`s (its section 4), word for word.
const SEED_SCHEMA: &str = include_str!("fixtures/seed_schema.sql");

/// One column as the seed declares it.
#[derive(Debug)]
struct SeedColumn {
    name: String,
    /// Lower case, as `information_schema` spells it: `bigint`, `varchar(255)`, `decimal(10,2)`.
    ty: String,
    not_null: bool,
    primary_key: bool,
    auto_increment: bool,
    unique: bool,
    default_now: bool,
    on_update_now: bool,
}

#[derive(Debug)]
struct SeedTable {
    name: String,
    columns: Vec<SeedColumn>,
    /// (column, referenced table, referenced column, ON DELETE CASCADE).
    foreign_keys: Vec<(String, String, String, bool)>,
}

fn seed_tables() -> Vec<SeedTable> {
    let mut tables = Vec::new();
    for block in SEED_SCHEMA.split("CREATE TABLE ").skip(1) {
        let (name, body) = block.split_once('(').expect("a table body");
        let body = body.rsplit_once(");").expect("the table's end").0;
        let mut table =
            SeedTable { name: name.trim().to_owned(), columns: Vec::new(), foreign_keys: Vec::new() };
        for line in body.lines() {
            let line = line.split("--").next().unwrap_or_default().trim().trim_end_matches(',');
            if line.is_empty() {
                continue;
            }
            let upper = line.to_uppercase();
            if let Some(fk) = upper.strip_prefix("FOREIGN KEY") {
                let cols: Vec<String> =
                    fk.split(['(', ')']).map(|p| p.trim().to_lowercase()).filter(|p| !p.is_empty()).collect();
                // "(cart_id) REFERENCES cart(id) ON DELETE CASCADE" → cart_id, references cart, id, on delete cascade
                let refs = cols[1].trim_start_matches("references").trim().to_owned();
                table.foreign_keys.push((
                    cols[0].clone(),
                    refs,
                    cols[2].clone(),
                    upper.contains("ON DELETE CASCADE"),
                ));
                continue;
            }
            let mut words = line.split_whitespace();
            let name = words.next().expect("a column name").to_lowercase();
            let ty = words.next().expect("a column type").to_lowercase();
            table.columns.push(SeedColumn {
                name,
                ty,
                not_null: upper.contains("NOT NULL") || upper.contains("PRIMARY KEY"),
                primary_key: upper.contains("PRIMARY KEY"),
                auto_increment: upper.contains("AUTO_INCREMENT"),
                unique: upper.contains("UNIQUE"),
                default_now: upper.contains("DEFAULT CURRENT_TIMESTAMP"),
                on_update_now: upper.contains("ON UPDATE CURRENT_TIMESTAMP"),
            });
        }
        tables.push(table);
    }
    tables
}

fn owner(table: &str) -> Service {
    match table {
        "users" => Service::Auth,
        "products" => Service::Product,
        "cart" | "cart_items" => Service::Cart,
        "orders" | "order_items" => Service::Order,
        "payments" => Service::Payment,
        other => panic!("the seed has a table {other} no service owns"),
    }
}

#[test]
fn the_seed_schema_is_read_whole() {
    let tables = seed_tables();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["users", "products", "cart", "cart_items", "orders", "order_items", "payments"]);
    let columns: usize = tables.iter().map(|t| t.columns.len()).sum();
    assert_eq!(columns, 6 + 7 + 3 + 5 + 7 + 6 + 9, "{tables:#?}");
    let payment_id = tables[4].columns.iter().find(|c| c.name == "payment_id").expect("orders.payment_id");
    assert_eq!((payment_id.ty.as_str(), payment_id.not_null), ("varchar(255)", false));
    assert_eq!(tables[3].foreign_keys, vec![("cart_id".into(), "cart".into(), "id".into(), true)]);
}

/// Every column of the seed, in the MySQL databases the migrations make: its type (with length,
/// precision and scale), nullability, key, uniqueness, defaults and foreign keys.
#[tokio::test]
async fn mysql_schema_is_the_seeds_column_by_column() {
    let f = Fixture::new(Backend::MySql);
    let mut problems = Vec::new();
    for table in seed_tables() {
        let Database::MySql(pool) = f.open(owner(&table.name)).await else { panic!("not MySQL") };
        let mut conn = pool.acquire().await.expect("a connection");
        type Column =
            (String, String, Option<i64>, Option<i64>, Option<i64>, String, Option<String>, String, String);
        let found: Vec<Column> = sqlx::query_as(
            "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), CAST(CHARACTER_MAXIMUM_LENGTH AS SIGNED), \
                    CAST(NUMERIC_PRECISION AS SIGNED), CAST(NUMERIC_SCALE AS SIGNED), CAST(IS_NULLABLE AS CHAR), \
                    CAST(COLUMN_DEFAULT AS CHAR), CAST(EXTRA AS CHAR), CAST(COLUMN_KEY AS CHAR) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
        )
        .bind(&table.name)
        .fetch_all(&mut *conn)
        .await
        .expect("columns");
        let unique: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(MIN(COLUMN_NAME) AS CHAR) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             GROUP BY INDEX_NAME HAVING COUNT(*) = 1",
        )
        .bind(&table.name)
        .fetch_all(&mut *conn)
        .await
        .expect("unique keys");
        let fks: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT CAST(k.COLUMN_NAME AS CHAR), CAST(k.REFERENCED_TABLE_NAME AS CHAR), \
                    CAST(k.REFERENCED_COLUMN_NAME AS CHAR), CAST(r.DELETE_RULE AS CHAR) \
             FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
               ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
             WHERE k.TABLE_SCHEMA = DATABASE() AND k.TABLE_NAME = ?",
        )
        .bind(&table.name)
        .fetch_all(&mut *conn)
        .await
        .expect("foreign keys");
        for want in &table.columns {
            let t = &table.name;
            let Some((_, data_type, length, precision, scale, nullable, default, extra, key)) =
                found.iter().find(|c| c.0 == want.name)
            else {
                problems.push(format!("{t}.{} is missing", want.name));
                continue;
            };
            let ty = match data_type.as_str() {
                "varchar" | "char" => format!("{data_type}({})", length.unwrap_or_default()),
                "decimal" => {
                    format!("decimal({},{})", precision.unwrap_or_default(), scale.unwrap_or_default())
                }
                other => other.to_owned(),
            };
            let extra = extra.to_lowercase();
            let default = default.clone().unwrap_or_default().to_lowercase();
            let checks = [
                (ty == want.ty, format!("type {ty}, the seed's {}", want.ty)),
                (
                    (nullable == "NO") == want.not_null,
                    format!("nullable {nullable}, the seed's NOT NULL {}", want.not_null),
                ),
                (!want.primary_key || key == "PRI", format!("key {key:?}, the seed's PRIMARY KEY")),
                (!want.auto_increment || extra.contains("auto_increment"), "no AUTO_INCREMENT".to_owned()),
                (!want.unique || unique.contains(&want.name), "no UNIQUE key of its own".to_owned()),
                (
                    !want.default_now || default.starts_with("current_timestamp"),
                    format!("default {default:?}, the seed's CURRENT_TIMESTAMP"),
                ),
                (
                    !want.on_update_now || extra.contains("on update current_timestamp"),
                    format!("extra {extra:?}, the seed's ON UPDATE CURRENT_TIMESTAMP"),
                ),
            ];
            for (ok, what) in checks {
                if !ok {
                    problems.push(format!("{t}.{}: {what}", want.name));
                }
            }
        }
        for (column, references, referenced, cascade) in &table.foreign_keys {
            let rule = if *cascade { "CASCADE" } else { "RESTRICT" };
            let found = fks
                .iter()
                .any(|(c, rt, rc, dr)| c == column && rt == references && rc == referenced && dr == rule);
            if !found {
                problems.push(format!("{}: no FOREIGN KEY ({column}) REFERENCES {references}({referenced}) ON DELETE {rule}: {fks:?}", table.name));
            }
        }
    }
    assert!(problems.is_empty(), "the MySQL schema departs from the seed's:\n{}", problems.join("\n"));
    f.cleanup().await;
}

/// SQLite stores the seed's tables with SQLite's types (money as exact decimal text, times as
/// RFC 3339 text): every seed column is there, NOT NULL where the seed says so.
#[tokio::test]
async fn sqlite_schema_has_every_seed_column() {
    let f = Fixture::new(Backend::Sqlite);
    let mut problems = Vec::new();
    for table in seed_tables() {
        f.open(owner(&table.name)).await.close().await;
        let path = f.dir.path().join(format!("{}.db", owner(&table.name).name()));
        let conn = rusqlite::Connection::open(&path).expect("open");
        let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", table.name)).expect("pragma");
        let found: Vec<(String, bool, bool)> = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(1)?, r.get::<_, i64>(3)? == 1, r.get::<_, i64>(5)? > 0))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        for want in &table.columns {
            match found.iter().find(|(name, _, _)| *name == want.name) {
                None => problems.push(format!("{}.{} is missing", table.name, want.name)),
                Some((_, not_null, pk)) if want.not_null && !not_null && !pk => {
                    problems.push(format!("{}.{} allows NULL; the seed says NOT NULL", table.name, want.name))
                }
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "the SQLite schema lacks the seed's:\n{}", problems.join("\n"));
    f.cleanup().await;
}

#[tokio::test]
async fn mysql_deadlocks_are_recognised_as_transient() {
    use sqlx::Connection;
    let f = Fixture::new(Backend::MySql);
    let Database::MySql(pool) = f.open(Service::Product).await else { panic!("not MySQL") };
    let mut conn = pool.acquire().await.expect("a connection");
    for id in [1, 2] {
        sqlx::query("INSERT INTO products (id, name, price, stock, created_at, updated_at) VALUES (?, 'x', 1, 1, NOW(), NOW())")
            .bind(id)
            .execute(&mut *conn)
            .await
            .expect("insert");
    }
    let (mut a, mut b) = (pool.acquire().await.expect("conn"), pool.acquire().await.expect("conn"));
    let mut ta = a.begin().await.expect("begin");
    let mut tb = b.begin().await.expect("begin");
    let bump = "UPDATE products SET stock = stock + 1 WHERE id = ?";
    sqlx::query(bump).bind(1).execute(&mut *ta).await.expect("a locks 1");
    sqlx::query(bump).bind(2).execute(&mut *tb).await.expect("b locks 2");
    // a waits for 2 while b waits for 1: InnoDB aborts one of them with 1213.
    let (ra, rb) = tokio::join!(sqlx::query(bump).bind(2).execute(&mut *ta), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        sqlx::query(bump).bind(1).execute(&mut *tb).await
    });
    let error = match (ra, rb) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("expected exactly one deadlock victim, got {other:?}"),
    };
    assert!(shop_services::storage::mysql::is_transient(&error), "{error}");
    assert!(!shop_services::storage::mysql::is_transient(&sqlx::Error::RowNotFound));
    // Both transactions end (and their connections go back) before the database is dropped,
    // which would otherwise wait for their metadata locks.
    let _ = ta.rollback().await;
    let _ = tb.rollback().await;
    drop((a, b));
    pool.close().await;
    f.cleanup().await;
}
