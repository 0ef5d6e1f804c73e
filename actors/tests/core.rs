//! The actor core on its own: in-memory stores, no HTTP, no database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use shop_actors::PaymentPoolConfig;
use shop_actors::bus::EventLog;
use shop_actors::memory::{MemoryCartStore, MemoryOrderStore, MemoryPayments};
use shop_actors::model::{Cart, OrderEventType, OrderStatus, PaymentReceipt, ProductSnapshot};
use shop_actors::ports::{CartStore, ChargeRequest, GatewayError, PaymentGateway, StoreError};
use shop_actors::{CartError, CheckoutError, Core, CoreConfig, Decimal};
use shop_actors::{PAYMENT_UNAVAILABLE, SagaConfig};

fn laptop() -> ProductSnapshot {
    ProductSnapshot { id: 1, name: "Laptop".into(), price: Decimal::new(99999, 2) }
}

fn mouse() -> ProductSnapshot {
    ProductSnapshot { id: 2, name: "Mouse".into(), price: Decimal::new(2999, 2) }
}

fn core_with(payments: Arc<dyn PaymentGateway>, config: CoreConfig) -> (Core, Arc<EventLog>) {
    let (core, bus) = Core::in_memory(config, payments).expect("core starts");
    let log = Arc::new(EventLog::default());
    bus.subscribe(log.clone());
    (core, log)
}

#[tokio::test]
async fn paid_checkout_empties_the_cart_and_declined_one_keeps_it() {
    // Order 2 is declined (every 2nd id), order 1 and 3 are paid.
    let (core, log) = core_with(Arc::new(MemoryPayments::new(2)), CoreConfig::default());
    core.cart.carts.add("john", laptop(), 1).await.expect("add");
    core.cart.carts.add("john", mouse(), 3).await.expect("add");

    let paid = core.order.checkouts.checkout("john", None).await.expect("checkout");
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(paid.total_amount, Decimal::new(108996, 2));
    assert!(core.cart.carts.get("john").await.expect("get").items.is_empty());

    core.cart.carts.add("john", mouse(), 1).await.expect("add");
    let declined = core.order.checkouts.checkout("john", None).await.expect("checkout");
    assert_eq!(declined.status, OrderStatus::Cancelled);
    assert_eq!(declined.failure_reason.as_deref(), Some("Card declined"));
    let kept = core.cart.carts.get("john").await.expect("get");
    assert_eq!(kept.items.len(), 1);
    assert_eq!(kept.items[0].quantity, 1);

    let retried = core.order.checkouts.checkout("john", None).await.expect("retry");
    assert_eq!(retried.status, OrderStatus::Paid);

    let kinds: Vec<_> = log.events().into_iter().map(|e| (e.event_type, e.order_id)).collect();
    assert_eq!(
        kinds,
        vec![
            (OrderEventType::OrderCreated, 1),
            (OrderEventType::OrderCompleted, 1),
            (OrderEventType::OrderCreated, 2),
            (OrderEventType::OrderCancelled, 2),
            (OrderEventType::OrderCreated, 3),
            (OrderEventType::OrderCompleted, 3),
        ]
    );
    assert_eq!(core.order.checkouts.checkout("john", None).await, Err(CheckoutError::EmptyCart));
}

#[tokio::test]
async fn a_replayed_completion_never_removes_items_added_later() {
    let (core, log) = core_with(Arc::new(MemoryPayments::new(0)), CoreConfig::default());
    core.cart.carts.add("ann", laptop(), 1).await.expect("add");
    core.order.checkouts.checkout("ann", None).await.expect("checkout");
    core.cart.carts.add("ann", laptop(), 2).await.expect("add after checkout");

    let completed = log
        .events()
        .into_iter()
        .find(|e| e.event_type == OrderEventType::OrderCompleted)
        .expect("completion published");
    use shop_actors::ports::EventHandler;
    core.cart.carts.handle(&completed).await.expect("replay handled");
    let cart = core.cart.carts.get("ann").await.expect("get");
    assert_eq!(cart.items.len(), 1);
    assert_eq!(cart.items[0].quantity, 2, "the replay took items added after the checkout");
}

#[tokio::test]
async fn concurrent_adds_to_one_cart_all_count() {
    let (core, _) = core_with(Arc::new(MemoryPayments::new(0)), CoreConfig::default());
    let adds = (0..200).map(|i| {
        let carts = core.cart.carts.clone();
        let product = if i % 2 == 0 { laptop() } else { mouse() };
        tokio::spawn(async move { carts.add("eve", product, 1).await })
    });
    for add in futures::future::join_all(adds).await {
        add.expect("task").expect("add");
    }
    let cart = core.cart.carts.get("eve").await.expect("get");
    assert_eq!(cart.items.iter().map(|i| i.quantity).sum::<u32>(), 200);
    assert_eq!(cart.version, 200);
}

#[tokio::test]
async fn concurrent_checkouts_of_one_cart_pay_once() {
    let payments = Arc::new(MemoryPayments::new(0));
    let (core, _) = core_with(payments.clone(), CoreConfig::default());
    core.cart.carts.add("max", laptop(), 1).await.expect("add");
    let tries = (0..10).map(|_| {
        let checkouts = core.order.checkouts.clone();
        tokio::spawn(async move { checkouts.checkout("max", None).await })
    });
    let results: Vec<_> =
        futures::future::join_all(tries).await.into_iter().map(|r| r.expect("task")).collect();
    let paid = results.iter().filter(|r| matches!(r, Ok(o) if o.status == OrderStatus::Paid)).count();
    assert_eq!(paid, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(CheckoutError::InProgress) | Err(CheckoutError::EmptyCart)))
    );
    assert_eq!(payments.count(), 1);
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_order() {
    let payments = Arc::new(MemoryPayments::new(0));
    let (core, _) = core_with(payments.clone(), CoreConfig::default());
    core.cart.carts.add("kim", laptop(), 1).await.expect("add");
    let first = core.order.checkouts.checkout("kim", Some("k-1".into())).await.expect("first");
    core.cart.carts.add("kim", mouse(), 1).await.expect("add");
    let again = core.order.checkouts.checkout("kim", Some("k-1".into())).await.expect("again");
    assert_eq!(first.id, again.id);
    assert_eq!(payments.count(), 1);
    assert_eq!(
        core.cart.carts.get("kim").await.expect("get").items.len(),
        1,
        "the second call checked nothing out"
    );
}

#[tokio::test]
async fn idle_actors_passivate_and_come_back_with_their_state() {
    let mut config = CoreConfig::default();
    config.carts.registry.idle_timeout = Duration::from_millis(50);
    let (core, _) = core_with(Arc::new(MemoryPayments::new(0)), config);
    for user in ["a", "b", "c"] {
        core.cart.carts.add(user, mouse(), 2).await.expect("add");
    }
    assert_eq!(core.cart.carts.stats().live, 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while core.cart.carts.stats().live > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "actors never passivated: {:?}",
            core.cart.carts.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(core.cart.carts.stats().passivations, 3);
    let cart = core.cart.carts.get("b").await.expect("reactivated");
    assert_eq!(cart.items[0].quantity, 2);
    assert_eq!(core.cart.carts.stats().activations, 4);
}

#[tokio::test]
async fn an_asked_passivation_stops_the_actor_and_the_next_message_reloads_it() {
    let (core, _) = core_with(Arc::new(MemoryPayments::new(0)), CoreConfig::default());
    core.cart.carts.add("p", mouse(), 3).await.expect("add");
    let first = core.cart.carts.registry().actor(&"p".to_owned()).expect("live actor");
    assert!(core.cart.carts.passivate("p").await, "the actor was live");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // The actor leaves the registry in `stopped`, a moment before actix drops its mailbox: wait
    // for both.
    while core.cart.carts.stats().live > 0 || first.connected() {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(core.cart.carts.stats().live, 0, "the actor never stopped: {:?}", core.cart.carts.stats());
    assert!(!first.connected(), "the old actor must be gone");
    assert_eq!(core.cart.carts.stats().passivations, 1);
    assert!(!core.cart.carts.passivate("p").await, "nothing live to passivate");
    assert_eq!(core.cart.carts.get("p").await.expect("reactivated").items[0].quantity, 3);
    assert_eq!(core.cart.carts.stats().activations, 2);
}

#[tokio::test]
async fn settled_orders_leave_memory_and_reload_for_later_transitions() {
    let (core, _) = core_with(Arc::new(MemoryPayments::new(0)), CoreConfig::default());
    core.cart.carts.add("s", mouse(), 1).await.expect("add");
    let order = core.order.checkouts.checkout("s", None).await.expect("checkout");
    assert_eq!(order.status, shop_actors::model::OrderStatus::Paid);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while core.order.orders.stats().live > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the settled order stayed live: {:?}",
            core.order.orders.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shipped = core
        .order
        .orders
        .transition(order.id, shop_actors::Transition::to(shop_actors::model::OrderStatus::Shipped))
        .await
        .expect("ship");
    assert_eq!(shipped.status, shop_actors::model::OrderStatus::Shipped);
    assert_eq!(shipped.version, order.version + 1);
}

/// A cart store that panics once, on the first save after `armed` is set.
struct PanicOnce {
    inner: MemoryCartStore,
    armed: AtomicBool,
}

#[async_trait]
impl CartStore for PanicOnce {
    async fn load(&self, username: &str) -> Result<Cart, StoreError> {
        self.inner.load(username).await
    }
    async fn save(&self, cart: &Cart, applied: Option<i64>) -> Result<i64, StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("simulated crash inside a cart handler");
        }
        self.inner.save(cart, applied).await
    }
    async fn checkout_applied(&self, username: &str, order_id: i64) -> Result<bool, StoreError> {
        self.inner.checkout_applied(username, order_id).await
    }
}

#[tokio::test]
async fn a_crashed_cart_actor_is_rebuilt_from_storage() {
    let store = Arc::new(PanicOnce { inner: MemoryCartStore::default(), armed: AtomicBool::new(false) });
    let core = Core::start(
        CoreConfig::default(),
        store.clone(),
        Arc::new(MemoryOrderStore::default()),
        Arc::new(MemoryPayments::new(0)),
        Arc::new(shop_actors::bus::InProcessBus::new()),
    )
    .expect("core");
    core.cart.carts.add("zed", mouse(), 1).await.expect("add");
    store.armed.store(true, Ordering::SeqCst);
    // The actor dies mid-command; the registry rebuilds it and the command is delivered again.
    let cart = core.cart.carts.add("zed", mouse(), 1).await.expect("delivered to a rebuilt actor");
    assert_eq!(cart.items[0].quantity, 2);
    assert_eq!(core.cart.carts.stats().restarts, 1);
    assert_eq!(core.cart.carts.get("zed").await.expect("get").items[0].quantity, 2);
}

#[tokio::test]
async fn bad_quantities_change_nothing() {
    let (core, _) = core_with(Arc::new(MemoryPayments::new(0)), CoreConfig::default());
    core.cart.carts.add("q", mouse(), 999).await.expect("add");
    assert_eq!(core.cart.carts.add("q", mouse(), 2).await, Err(CartError::QuantityOutOfRange(1001)));
    assert_eq!(core.cart.carts.add("q", laptop(), 0).await, Err(CartError::QuantityOutOfRange(0)));
    assert_eq!(core.cart.carts.set_quantity("q", 7, 1).await, Err(CartError::NotInCart(7)));
    let cart = core.cart.carts.get("q").await.expect("get");
    assert_eq!((cart.items.len(), cart.items[0].quantity, cart.version), (1, 999, 1));
}

/// A gateway that never answers until told to.
struct Stuck(tokio::sync::Notify);

#[async_trait]
impl PaymentGateway for Stuck {
    async fn charge(&self, _req: ChargeRequest) -> Result<PaymentReceipt, GatewayError> {
        self.0.notified().await;
        Err(GatewayError::Unavailable("released".into()))
    }
}

#[tokio::test]
async fn a_full_payment_pool_pushes_back() {
    let mut config = CoreConfig::default();
    config.order.payments = PaymentPoolConfig {
        workers: 1,
        queue_per_worker: 1,
        acquire_timeout: Duration::from_millis(100),
        call_timeout: Duration::from_secs(30),
    };
    let (core, _) = core_with(Arc::new(Stuck(tokio::sync::Notify::new())), config);
    for user in ["u1", "u2", "u3"] {
        core.cart.carts.add(user, mouse(), 1).await.expect("add");
    }
    let held: Vec<_> = ["u1", "u2"]
        .into_iter()
        .map(|u| {
            let c = core.order.checkouts.clone();
            tokio::spawn(async move { c.checkout(u, None).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while core.order.payments.available() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the two checkouts never took the pool");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(core.order.checkouts.checkout("u3", None).await, Err(CheckoutError::Busy));
    assert_eq!(
        core.cart.carts.get("u3").await.expect("get").items.len(),
        1,
        "a refused checkout touches nothing"
    );
    for h in held {
        h.abort();
    }
}

#[tokio::test]
async fn a_checkout_past_its_deadline_cancels_and_gives_the_cart_back() {
    let mut config = CoreConfig::default();
    config.order.saga = SagaConfig {
        deadline: Duration::from_millis(300),
        request_timeout: Duration::from_secs(10),
        ..SagaConfig::default()
    };
    // Each charge alone could wait far longer than the caller: the deadline bounds them.
    config.order.payments =
        PaymentPoolConfig { call_timeout: Duration::from_secs(60), ..PaymentPoolConfig::default() };
    let (core, log) = core_with(Arc::new(Stuck(tokio::sync::Notify::new())), config);
    core.cart.carts.add("late", mouse(), 2).await.expect("add");

    let order = core
        .order
        .checkouts
        .checkout("late", None)
        .await
        .expect("the saga answers, not the caller's timeout");
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.failure_reason.as_deref(), Some(PAYMENT_UNAVAILABLE));
    assert_eq!(order.payment_id, None);
    let cart = core.cart.carts.get("late").await.expect("get");
    assert_eq!((cart.items.len(), cart.items[0].quantity), (1, 2), "the items stay");
    assert!(cart.checkout.is_none(), "the cart was given back, not left held until its lease lapses");
    let kinds: Vec<_> = log.events().into_iter().map(|e| e.event_type).collect();
    assert_eq!(kinds, vec![OrderEventType::OrderCreated, OrderEventType::OrderCancelled]);
}
