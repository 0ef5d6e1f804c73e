//! One storage suite, run against both backends: SQLite (a fresh file per test) and MySQL (a
//! fresh database per test on the server the tests use; see `shop_services::testing`). If MySQL
//! is not reachable the MySQL half fails and says what to start.

use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use shop_actors::CartConfig;
use shop_actors::model::{
    Cart, CartItem, CheckoutHold, NewOrder, OrderEvent, OrderEventType, OrderItem, OrderStatus,
    PaymentStatus, ProductSnapshot,
};
use shop_actors::ports::StoreError;
use shop_actors::runtime::ActorRuntime;
use shop_actors::{CartError, Carts, OrderError, Orders, Transition};
use shop_services::Service;
use shop_services::ServiceError;
use shop_services::auth::NewUserRow;
use shop_services::auth::Role;
use shop_services::payment::NewPayment;
use shop_services::product::ProductInput;
use shop_services::storage::Database;
use shop_services::testing::{drop_mysql, fresh_mysql_url, open_or_explain};

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
    CartItem { product_id, product_name: format!("p{product_id}"), price: money("19.99"), quantity }
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
    a_completed_order_is_applied_to_a_cart_once,
    payments_are_one_per_order,
    orders_round_trip_with_their_items,
    order_writes_are_fenced_by_version,
    two_runtimes_adding_to_the_same_carts_lose_nothing,
    two_runtimes_racing_paid_and_cancelled_end_in_one_state,
    two_runtimes_hand_a_cart_to_one_checkout,
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
    let all = a.list().await.expect("list");
    assert_eq!(all.len(), seed.len());
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

async fn a_completed_order_is_applied_to_a_cart_once(f: Fixture) {
    let carts = f.open(Service::Cart).await.carts();
    let mut cart = Cart::empty("di");
    cart.items = vec![item(1, 1)];
    cart.version = carts.save(&cart, None).await.expect("save");
    assert!(!carts.checkout_applied("di", 77).await.expect("applied"));
    cart.items.clear();
    cart.version = carts.save(&cart, Some(77)).await.expect("apply");
    assert!(carts.checkout_applied("di", 77).await.expect("applied"));
    assert!(!carts.checkout_applied("other", 77).await.expect("applied"));
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
        status: if reason.is_some() { PaymentStatus::Failed } else { PaymentStatus::Success },
        transaction_id: if reason.is_some() { None } else { Some("TXN_ABC123") },
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
    let mine = orders.list_for_user("fay").await.expect("list");
    assert_eq!(mine.iter().map(|o| o.id).collect::<Vec<_>>(), vec![second.id, first.id], "newest first");
    assert!(mine.iter().all(|o| o.items.len() == 2 && o.items[0].product_name == "Laptop"));
    assert_eq!(orders.load(424242).await.expect("load"), None);
    f.cleanup().await;
}

async fn order_writes_are_fenced_by_version(f: Fixture) {
    let orders = f.open(Service::Order).await.orders();
    let order = orders.create(new_order("hal", None)).await.expect("create");
    let mut paid = order.clone();
    paid.status = OrderStatus::Paid;
    paid.payment_id = Some(9);
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
    assert_eq!((stored.status, stored.payment_id, stored.version), (OrderStatus::Paid, Some(9), 2));
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
                a.transition(id, Transition { payment_id: Some(id), ..Transition::to(OrderStatus::Paid) }),
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
        let (x, y) = tokio::join!(a.begin_checkout(&user), b.begin_checkout(&user));
        let granted = match (&x, &y) {
            (Ok(lease), Err(CartPortError::CheckoutInProgress))
            | (Err(CartPortError::CheckoutInProgress), Ok(lease)) => lease.clone(),
            other => panic!("round {round}: exactly one checkout must hold the cart, got {other:?}"),
        };
        // Released by the instance that did not grant it: the hold is shared state.
        let other = if x.is_ok() { b } else { a };
        other.release_checkout(&user, granted.checkout_id).await.expect("release");
        a.begin_checkout(&user).await.expect("free again after the release");
    }
    for (_, runtime) in instances {
        runtime.shutdown();
    }
    f.cleanup().await;
}

// ------------------------------------------------------------------------------- MySQL only

/// The seed's columns, as `SHOW CREATE TABLE` prints them. A migration that drops, renames or
/// retypes one of them fails here.
const SEED_SCHEMA: &[(Service, &str, &[&str])] = &[
    (
        Service::Auth,
        "users",
        &[
            "`id` bigint(20) NOT NULL AUTO_INCREMENT",
            "`username` varchar(50) NOT NULL",
            "`email` varchar(100) NOT NULL",
            "`password` varchar(255) NOT NULL",
            "`role` varchar(20) NOT NULL DEFAULT 'USER'",
            "`created_at` datetime(6) NOT NULL",
            "UNIQUE KEY `uk_users_username` (`username`)",
            "UNIQUE KEY `uk_users_email` (`email`)",
        ],
    ),
    (
        Service::Product,
        "products",
        &[
            "`id` bigint(20) NOT NULL AUTO_INCREMENT",
            "`name` varchar(255) NOT NULL",
            "`description` text",
            "`price` decimal(10,2) NOT NULL",
            "`stock` int(11) NOT NULL",
            "`created_at` datetime(6) NOT NULL",
            "`updated_at` datetime(6) NOT NULL",
        ],
    ),
    (
        Service::Cart,
        "cart",
        &[
            "`id` bigint(20) NOT NULL AUTO_INCREMENT",
            "`username` varchar(50) NOT NULL",
            "`created_at` datetime(6) NOT NULL",
            "`updated_at` datetime(6) NOT NULL",
            "UNIQUE KEY `uk_cart_username` (`username`)",
        ],
    ),
    (
        Service::Cart,
        "cart_items",
        &[
            "`id` bigint(20) NOT NULL AUTO_INCREMENT",
            "`cart_id` bigint(20) NOT NULL",
            "`product_id` bigint(20) NOT NULL",
            "`product_name` varchar(255) NOT NULL",
            "`price` decimal(10,2) NOT NULL",
            "`quantity` int(11) NOT NULL",
            "UNIQUE KEY `uk_cart_items_cart_product` (`cart_id`,`product_id`)",
            "FOREIGN KEY (`cart_id`) REFERENCES `cart` (`id`) ON DELETE CASCADE",
        ],
    ),
    (
        Service::Order,
        "orders",
        &[
            "`id` bigint(20) NOT NULL AUTO_INCREMENT",
            "`username` varchar(50) NOT NULL",
            "`total_amount` decimal(10,2) NOT NULL",
            "`status` varchar(20) NOT NULL",
            "`payment_id` bigint(20) DEFAULT NULL",
            "`failure_reason` varchar(255) DEFAULT NULL",
            "`created_at` datetime(6) NOT NULL",
            "`updated_at` datetime(6) NOT NULL",
        ],
    ),
    (
        Service::Order,
        "order_items",
        &[
            "`id` bigint(20) NOT NULL AUTO_INCREMENT",
            "`order_id` bigint(20) NOT NULL",
            "`product_id` bigint(20) NOT NULL",
            "`product_name` varchar(255) NOT NULL",
            "`price` decimal(10,2) NOT NULL",
            "`quantity` int(11) NOT NULL",
            "FOREIGN KEY (`order_id`) REFERENCES `orders` (`id`) ON DELETE CASCADE",
        ],
    ),
    (
        Service::Payment,
        "payments",
        &[
            "`id` bigint(20) NOT NULL AUTO_INCREMENT",
            "`order_id` bigint(20) NOT NULL",
            "`user_id` varchar(100) NOT NULL",
            "`amount` decimal(10,2) NOT NULL",
            "`status` varchar(20) NOT NULL",
            "`transaction_id` varchar(50) DEFAULT NULL",
            "`failure_reason` varchar(255) DEFAULT NULL",
            "`created_at` datetime(6) NOT NULL",
            "UNIQUE KEY `uk_payments_order` (`order_id`)",
        ],
    ),
];

/// MySQL 8 prints integer types without display widths; MariaDB keeps them.
fn normalise(ddl: &str) -> String {
    ddl.replace("bigint(20)", "bigint").replace("int(11)", "int")
}

#[tokio::test]
async fn mysql_schema_keeps_the_seed_columns() {
    let f = Fixture::new(Backend::MySql);
    for (service, table, columns) in SEED_SCHEMA {
        let Database::MySql(pool) = f.open(*service).await else { panic!("not MySQL") };
        let mut conn = pool.acquire().await.expect("a connection");
        let (_, ddl): (String, String) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SHOW CREATE TABLE `{table}`")))
                .fetch_one(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"));
        let ddl = normalise(&ddl);
        for column in *columns {
            assert!(ddl.contains(&normalise(column)), "{table} lost `{column}`:\n{ddl}");
        }
    }
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
