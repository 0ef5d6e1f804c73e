//! End-to-end tests: the embedded system over real HTTP, as a REST client uses it.

mod common;

use std::str::FromStr;

use common::{Backend, PASSWORD, TestApp, id_of, quantity_of};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shop_actors::model::OrderEventType;
use shop_http::tools::load::{LoadConfig, Scenario};
use shop_services::Service;
use shop_services::auth::{Claims, JwtKeys, Role, Secret, USER_AUDIENCE, USER_ISSUER};
use shop_services::payment::FAILURE_REASONS;

const LAPTOP: i64 = 1;
const MOUSE: i64 = 2;

/// The flows that touch every database run on both backends: SQLite (embedded mode) and MySQL
/// (all five services on MariaDB/MySQL).
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $case() { super::$case(super::Backend::Sqlite).await } )*
        }
        mod mysql {
            $( #[tokio::test] async fn $case() { super::$case(super::Backend::MySql).await } )*
        }
    };
}

on_both_backends!(
    success_flow_pays_publishes_and_empties_the_cart,
    failure_flow_cancels_keeps_the_cart_and_a_retry_can_succeed,
    two_hundred_checkouts_pay_about_eighty_percent_and_keep_the_invariants,
    a_hundred_concurrent_adds_all_count,
    ten_concurrent_checkouts_of_one_cart_pay_once,
    a_user_reads_their_profile_and_edits_the_cart_line_by_line,
    the_same_idempotency_key_returns_the_same_order,
    concurrent_checkouts_with_one_idempotency_key_make_one_order,
    a_paid_order_takes_its_units_and_a_cancelled_one_gives_them_back,
    fifty_buyers_of_ten_units_get_ten_orders_and_forty_conflicts,
);

fn money(v: &Value) -> Decimal {
    Decimal::from_str(&v.to_string()).unwrap_or_else(|e| panic!("{v} is not money: {e}"))
}

/// The stock `GET /api/products` shows for one product.
async fn stock_of(t: &TestApp, product_id: i64) -> i64 {
    let products = t.products().await;
    let found = products.as_array().and_then(|all| all.iter().find(|p| p["id"] == json!(product_id)));
    found.and_then(|p| p["stock"].as_i64()).unwrap_or_else(|| panic!("no product {product_id}: {products}"))
}

async fn a_paid_order_takes_its_units_and_a_cancelled_one_gives_them_back(backend: Backend) {
    let t = TestApp::on(backend, |c| c.payment_success_rate = 1.0).await;
    let before = stock_of(&t, LAPTOP).await;
    let ann = t.user("ann").await;
    t.add(&ann, LAPTOP, 3).await.ok(200);
    assert_eq!(t.checkout(&ann).await.ok(201)["status"], "PAID");
    assert_eq!(stock_of(&t, LAPTOP).await, before - 3, "a paid order of 3 takes 3 units");
    let report = t.app.databases().audit().await.expect("audit");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.units.sold, report.units.reserved), (3, 0));
    drop(t);

    let t = TestApp::on(backend, |c| c.payment_success_rate = 0.0).await;
    let bob = t.user("bob").await;
    t.add(&bob, LAPTOP, 3).await.ok(200);
    let order = t.checkout(&bob).await.ok(201).clone();
    assert_eq!(order["status"], "CANCELLED");
    assert!(order["paymentId"].is_null(), "a declined order has no transaction");
    assert_eq!(stock_of(&t, LAPTOP).await, before, "a cancelled order gives its units back");
    let report = t.app.databases().audit().await.expect("audit");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.payments_by_status.get("FAILED"), Some(&1));
}

async fn fifty_buyers_of_ten_units_get_ten_orders_and_forty_conflicts(backend: Backend) {
    let t = TestApp::on(backend, |c| c.payment_success_rate = 1.0).await;
    let admin = t.admin().await;
    let body = json!({ "name": "Limited", "price": "49.99", "stock": 10 });
    let product = t.call(Service::Product, Method::POST, "/api/products", Some(&admin), Some(body)).await;
    let product_id = id_of(product.ok(201));
    let mut tokens = Vec::new();
    for i in 0..50 {
        let token = t.user(&format!("buyer{i}")).await;
        t.add(&token, product_id, 1).await.ok(200);
        tokens.push(token);
    }
    let replies = futures::future::join_all(tokens.iter().map(|token| t.checkout(token))).await;
    let paid = replies.iter().filter(|r| r.status.as_u16() == 201 && r.body["status"] == "PAID").count();
    let refused: Vec<_> = replies.iter().filter(|r| r.status.as_u16() == 409).collect();
    assert_eq!((paid, refused.len()), (10, 40), "{replies:?}");
    for r in &refused {
        let detail = r.problem(409);
        assert!(detail.contains("Limited"), "the problem names the product: {detail}");
        assert_eq!((r.body["productId"].clone(), r.body["available"].clone()), (json!(product_id), json!(0)));
    }
    assert_eq!(stock_of(&t, product_id).await, 0);
    let report = t.app.databases().audit().await.expect("audit");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        (report.orders, report.payments),
        (10, 10),
        "a refused checkout makes no order and no payment"
    );
    // The refused keep their carts, free to change and check out again.
    let cart = t.cart(&tokens[replies.iter().position(|r| r.status.as_u16() == 409).expect("one")]).await;
    assert_eq!(quantity_of(&cart, product_id), 1);
}

async fn success_flow_pays_publishes_and_empties_the_cart(backend: Backend) {
    let t = TestApp::on(backend, |c| c.payment_success_rate = 1.0).await;
    let john = t.user("john").await;
    t.add(&john, LAPTOP, 2).await.ok(200);
    let cart = t.add(&john, MOUSE, 3).await.ok(200).clone();
    assert_eq!(money(&cart["totalAmount"]), Decimal::from_str("2089.95").expect("dec"));
    assert_eq!(cart["items"][1]["subtotal"].to_string(), "89.97");

    let order = t.checkout(&john).await.ok(201).clone();
    assert_eq!(order["status"], "PAID");
    assert_eq!(order["username"], "john");
    assert_eq!(order["totalAmount"].to_string(), "2089.95");
    assert_eq!(order["items"].as_array().map(Vec::len), Some(2));
    assert!(order["failureReason"].is_null());
    let order_id = id_of(&order);

    let order_service = t.service_token(Service::Order, Service::Payment);
    let path = format!("/api/payments/order/{order_id}");
    let payment =
        t.call(Service::Payment, Method::GET, &path, Some(&order_service), None).await.ok(200).clone();
    assert_eq!(payment["status"], "SUCCESS");
    assert_eq!(
        payment["transactionId"], order["paymentId"],
        "the order carries the gateway's transaction id"
    );
    assert_eq!(payment["amount"].to_string(), "2089.95");
    let txn = payment["transactionId"].as_str().expect("a transaction id");
    assert!(txn.starts_with("TXN_") && txn.len() > 4, "{txn}");

    assert_eq!(t.outcome_events(order_id), vec![OrderEventType::OrderCompleted]);
    assert!(t.events_of(order_id).iter().any(|e| e.event_type == OrderEventType::OrderCreated));
    let cart = t.cart(&john).await;
    assert_eq!(cart["items"], json!([]));
    assert_eq!(money(&cart["totalAmount"]), Decimal::ZERO);

    let mine = t.call(Service::Order, Method::GET, "/api/orders", Some(&john), None).await.ok(200).clone();
    assert_eq!(mine.as_array().map(Vec::len), Some(1));
    let one =
        t.call(Service::Order, Method::GET, &format!("/api/orders/{order_id}"), Some(&john), None).await;
    assert_eq!(one.ok(200)["status"], "PAID");
}

async fn failure_flow_cancels_keeps_the_cart_and_a_retry_can_succeed(backend: Backend) {
    let t = TestApp::on(backend, |c| c.payment_success_rate = 0.5).await;
    let jane = t.user("jane").await;
    t.add(&jane, MOUSE, 2).await.ok(200);
    let before = t.cart(&jane).await;

    // At rate 0.5 the outcomes alternate unpredictably: go on until a success has followed a
    // failure (a success before any failure empties the cart, so it is filled again).
    let mut cancelled = 0;
    let mut paid_after_failure = 0;
    for _ in 0..40 {
        let order = t.checkout(&jane).await.ok(201).clone();
        let order_id = id_of(&order);
        if order["status"] == "CANCELLED" {
            cancelled += 1;
            let reason = order["failureReason"].as_str().expect("a reason");
            assert!(FAILURE_REASONS.contains(&reason), "{reason}");
            let events = t.events_of(order_id);
            let event =
                events.iter().find(|e| e.event_type == OrderEventType::OrderCancelled).expect("published");
            assert_eq!(event.reason.as_deref(), Some(reason));
            assert_eq!(t.outcome_events(order_id), vec![OrderEventType::OrderCancelled]);
            assert_eq!(t.cart(&jane).await, before, "a failed payment must leave the cart intact");
        } else {
            assert_eq!(order["status"], "PAID");
            assert_eq!(t.outcome_events(order_id), vec![OrderEventType::OrderCompleted]);
            assert_eq!(t.cart(&jane).await["items"], json!([]));
            if cancelled > 0 {
                paid_after_failure += 1;
                break;
            }
            t.add(&jane, MOUSE, 2).await.ok(200);
        }
    }
    assert_eq!(paid_after_failure, 1, "no retry after a failure succeeded in 40 tries");
}

async fn two_hundred_checkouts_pay_about_eighty_percent_and_keep_the_invariants(backend: Backend) {
    let t = TestApp::on(backend, |_| {}).await;
    let bulk = t.bulk_product().await;
    let names: Vec<String> = (0..20).map(|i| format!("load{i}")).collect();
    let users: Vec<String> = futures::future::join_all(names.iter().map(|n| t.user(n))).await;
    let runs = users.iter().map(|token| async {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            t.add(token, bulk, 1).await.ok(200);
            let order = t.checkout(token).await.ok(201).clone();
            statuses.push(order["status"].as_str().unwrap_or_default().to_owned());
        }
        statuses
    });
    let statuses: Vec<String> = futures::future::join_all(runs).await.into_iter().flatten().collect();
    assert_eq!(statuses.len(), 200);
    let paid = statuses.iter().filter(|s| *s == "PAID").count();
    assert!((140..=180).contains(&paid), "{paid} of 200 paid at rate 0.8");
    assert_eq!(statuses.iter().filter(|s| *s == "CANCELLED").count(), 200 - paid);

    let dbs = t.app.databases();
    let report = dbs.audit().await.expect("audit runs");
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!((report.orders, report.payments), (200, 200));
    assert_eq!(report.orders_by_status.get("PAID").copied(), Some(i64::try_from(paid).expect("fits")));
    assert_eq!(
        report.payments_by_status.get("SUCCESS").copied(),
        report.orders_by_status.get("PAID").copied()
    );
    assert_eq!(
        report.payments_by_status.get("FAILED").copied(),
        report.orders_by_status.get("CANCELLED").copied()
    );
}

async fn a_hundred_concurrent_adds_all_count(backend: Backend) {
    let t = TestApp::on(backend, |_| {}).await;
    let eve = t.user("eve").await;
    let adds = (0..100).map(|i| t.add(&eve, if i % 2 == 0 { MOUSE } else { LAPTOP }, 1));
    for reply in futures::future::join_all(adds).await {
        reply.ok(200);
    }
    let cart = t.cart(&eve).await;
    assert_eq!((quantity_of(&cart, MOUSE), quantity_of(&cart, LAPTOP)), (50, 50));
    assert_eq!(money(&cart["totalAmount"]), Decimal::from_str("51499.00").expect("dec"));
}

async fn ten_concurrent_checkouts_of_one_cart_pay_once(backend: Backend) {
    let t = TestApp::on(backend, |c| c.payment_success_rate = 1.0).await;
    let max = t.user("max").await;
    t.add(&max, LAPTOP, 1).await.ok(200);
    let replies = futures::future::join_all((0..10).map(|_| t.checkout(&max))).await;
    let paid: Vec<&Reply> = replies.iter().filter(|r| r.status.as_u16() == 201).collect();
    assert_eq!(paid.len(), 1, "{replies:?}");
    assert_eq!(paid[0].body["status"], "PAID");
    for r in replies.iter().filter(|r| r.status.as_u16() != 201) {
        let status = r.status.as_u16();
        assert!(status == 409 || status == 400, "{r:?}");
        r.problem(status);
    }
    let dbs = t.app.databases();
    let report = dbs.audit().await.expect("audit");
    assert_eq!((report.orders, report.payments), (1, 1));
    assert!(report.is_clean(), "{:?}", report.violations);
}

use common::Reply;

async fn the_same_idempotency_key_returns_the_same_order(backend: Backend) {
    let t = TestApp::on(backend, |c| c.payment_success_rate = 1.0).await;
    let kim = t.user("kim").await;
    t.add(&kim, MOUSE, 1).await.ok(200);
    let place = || t.checkout_with_key(&kim, "order-kim-1");
    let first = place().await.ok(201).clone();
    t.add(&kim, LAPTOP, 1).await.ok(200);
    let again = place().await.ok(201).clone();
    assert_eq!(first, again);
    assert_eq!(quantity_of(&t.cart(&kim).await, LAPTOP), 1, "the repeat checked nothing out");
    let report = {
        let dbs = t.app.databases();
        dbs.audit().await.expect("audit")
    };
    assert_eq!(report.payments, 1);
}

/// Eight checkouts sent at once with one key: one order, one payment; every checkout that is
/// answered 201 answers that order, the others 409 (the first still holds the cart), and the key
/// asked again later answers the same order.
async fn concurrent_checkouts_with_one_idempotency_key_make_one_order(backend: Backend) {
    let t = TestApp::on(backend, |c| c.payment_success_rate = 1.0).await;
    let lee = t.user("lee").await;
    t.add(&lee, MOUSE, 2).await.ok(200);
    let place = || t.checkout_with_key(&lee, "lee-once");
    let replies = futures::future::join_all((0..8).map(|_| place())).await;
    let mut ids = Vec::new();
    for reply in &replies {
        match reply.status.as_u16() {
            201 => ids.push(id_of(&reply.body)),
            409 => {
                reply.problem(409);
            }
            other => panic!("unexpected answer {other}: {reply:?}"),
        }
    }
    assert!(!ids.is_empty(), "no checkout was answered with the order: {replies:?}");
    ids.dedup();
    assert_eq!(ids.len(), 1, "one key, one order: {ids:?}");
    let again = place().await.ok(201).clone();
    assert_eq!(id_of(&again), ids[0], "the key asked again answers the same order");
    assert_eq!(again["status"], "PAID");
    let report = t.app.databases().audit().await.expect("audit");
    assert_eq!((report.orders, report.payments), (1, 1), "one order and one payment");
    assert!(report.is_clean(), "{:?}", report.violations);
    assert!(t.cart(&lee).await["items"].as_array().is_some_and(Vec::is_empty), "the paid cart is empty");
}

/// The success paths of the profile and the cart's line edits: read oneself, set a quantity,
/// remove a line by setting 0 and by DELETE, empty the whole cart.
async fn a_user_reads_their_profile_and_edits_the_cart_line_by_line(backend: Backend) {
    let t = TestApp::on(backend, |_| {}).await;
    let ann = t.user("ann").await;
    let me = t.call(Service::Auth, Method::GET, "/api/auth/me", Some(&ann), None).await;
    let me = me.ok(200);
    assert_eq!((me["username"].clone(), me["email"].clone()), (json!("ann"), json!("ann@example.com")));
    assert_eq!(me["role"], "USER");
    assert!(me["id"].is_i64() && me["createdAt"].is_string(), "{me}");
    assert!(me.get("password").is_none() && me.get("passwordHash").is_none(), "no secret shown: {me}");

    t.add(&ann, LAPTOP, 1).await.ok(200);
    t.add(&ann, MOUSE, 3).await.ok(200);
    let (t, ann) = (&t, ann.as_str());
    let put = |id: i64, q: i64| async move {
        let path = format!("/api/cart/items/{id}");
        t.call(Service::Cart, Method::PUT, &path, Some(ann), Some(json!({ "quantity": q }))).await
    };
    let cart = put(MOUSE, 5).await.ok(200).clone();
    assert_eq!((quantity_of(&cart, MOUSE), quantity_of(&cart, LAPTOP)), (5, 1), "{cart}");
    assert_eq!(money(&cart["totalAmount"]), Decimal::from_str("1149.94").expect("dec"), "999.99 + 5 × 29.99");
    let cart = put(MOUSE, 0).await.ok(200).clone();
    assert_eq!(cart["items"].as_array().map(Vec::len), Some(1), "0 removes the line: {cart}");
    assert_eq!(quantity_of(&cart, MOUSE), 0);

    t.add(ann, MOUSE, 2).await.ok(200);
    let cart =
        t.call(Service::Cart, Method::DELETE, "/api/cart/items/1", Some(ann), None).await.ok(200).clone();
    assert_eq!(
        (quantity_of(&cart, LAPTOP), quantity_of(&cart, MOUSE)),
        (0, 2),
        "only the mouse left: {cart}"
    );
    assert_eq!(t.cart(ann).await, cart, "the change is stored");

    let cleared = t.call(Service::Cart, Method::DELETE, "/api/cart", Some(ann), None).await;
    assert_eq!(cleared.status.as_u16(), 204, "{cleared:?}");
    assert_eq!(cleared.body, Value::Null, "204 has no body");
    let cart = t.cart(ann).await;
    assert_eq!(cart["items"], json!([]));
    assert_eq!(money(&cart["totalAmount"]), Decimal::ZERO);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_problem_and_changes_nothing() {
    let t = TestApp::spawn_with(|c| c.payment_success_rate = 1.0).await;
    let bob = t.user("bob").await;
    let admin = t.admin().await;
    t.add(&bob, MOUSE, 2).await.ok(200);
    let cart_before = t.cart(&bob).await;
    let products_before = t.products().await;

    // Malformed JSON and missing or wrong fields.
    t.raw(Service::Cart, Method::POST, "/api/cart/add", Some(&bob), "{\"productId\": 1,").await.problem(400);
    t.raw(Service::Cart, Method::POST, "/api/cart/add", Some(&bob), "{\"productId\": 1}").await.problem(400);
    t.raw(Service::Cart, Method::POST, "/api/cart/add", Some(&bob), "{\"quantity\": 1}").await.problem(400);
    t.raw(Service::Cart, Method::POST, "/api/cart/add", Some(&bob), "[]").await.problem(400);
    t.raw(Service::Cart, Method::POST, "/api/cart/add", Some(&bob), "{\"productId\":\"x\",\"quantity\":1}")
        .await
        .problem(400);
    // Quantities: zero, negative, absurd, beyond a line's limit, beyond stock.
    for q in ["0", "-1", "1e30", "99999999999999999999", "2.5", "1001"] {
        let body = format!("{{\"productId\": 2, \"quantity\": {q}}}");
        t.raw(Service::Cart, Method::POST, "/api/cart/add", Some(&bob), &body).await.problem(400);
    }
    t.add(&bob, LAPTOP, 51).await.problem(409);
    let put = |q: i64| {
        t.call(Service::Cart, Method::PUT, "/api/cart/items/2", Some(&bob), Some(json!({"quantity": q})))
    };
    put(-3).await.problem(400);
    t.call(Service::Cart, Method::PUT, "/api/cart/items/99", Some(&bob), Some(json!({"quantity": 1})))
        .await
        .problem(404);
    t.call(Service::Cart, Method::DELETE, "/api/cart/items/abc", Some(&bob), None).await.problem(400);
    // Unknown product.
    t.add(&bob, 999, 1).await.problem(404);
    t.call(Service::Product, Method::GET, "/api/products/999", None, None).await.problem(404);

    // A price with three decimals, a negative price, a missing name: refused, catalog unchanged.
    for body in [
        json!({"name": "Cable", "price": 9.999, "stock": 5}),
        json!({"name": "Cable", "price": "9.999", "stock": 5}),
        json!({"name": "Cable", "price": -1, "stock": 5}),
        json!({"name": "", "price": 1, "stock": 5}),
        json!({"name": "Cable", "price": 1, "stock": -5}),
        json!({"price": 1, "stock": 5}),
    ] {
        t.call(Service::Product, Method::POST, "/api/products", Some(&admin), Some(body)).await.problem(400);
    }

    // Tokens: none, malformed, expired, signed with another secret.
    t.call(Service::Cart, Method::GET, "/api/cart", None, None).await.problem(401);
    t.call(Service::Cart, Method::GET, "/api/cart", Some("not-a-jwt"), None).await.problem(401);
    let now = chrono::Utc::now().timestamp();
    let ours =
        JwtKeys::new(&Secret::new(common::JWT_SECRET), std::time::Duration::from_secs(60)).expect("keys");
    let claims = |role, iat, exp| Claims {
        iss: USER_ISSUER.into(),
        aud: USER_AUDIENCE.into(),
        sub: "bob".into(),
        role,
        iat,
        exp,
    };
    let expired = ours.sign(&claims(Role::User, now - 7200, now - 3600)).expect("sign");
    let detail = t.call(Service::Cart, Method::GET, "/api/cart", Some(&expired), None).await.problem(401);
    assert!(detail.contains("expired"), "{detail}");
    let theirs = JwtKeys::new(
        &Secret::new("some-other-secret-entirely-0123456789"),
        std::time::Duration::from_secs(60),
    )
    .expect("keys");
    let forged = theirs.issue("bob", Role::Admin).expect("sign");
    t.call(Service::Cart, Method::GET, "/api/cart", Some(&forged), None).await.problem(401);
    t.call(
        Service::Product,
        Method::POST,
        "/api/products",
        Some(&forged),
        Some(json!({"name":"X","price":1,"stock":1})),
    )
    .await
    .problem(401);

    // A user token edited to another audience or issuer; a service token made for another
    // service than the one it is shown to.
    let mut elsewhere = claims(Role::User, now, now + 60);
    elsewhere.aud = "shop-cart".into();
    let elsewhere = ours.sign(&elsewhere).expect("sign");
    t.call(Service::Cart, Method::GET, "/api/cart", Some(&elsewhere), None).await.problem(401);
    let mut stranger = claims(Role::User, now, now + 60);
    stranger.iss = "someone-else".into();
    let stranger = ours.sign(&stranger).expect("sign");
    t.call(Service::Cart, Method::GET, "/api/cart", Some(&stranger), None).await.problem(401);
    let for_payment = ours.issue_service(Service::Order, Service::Payment).expect("sign");
    let for_cart = ours.issue_service(Service::Order, Service::Cart).expect("sign");
    t.call(Service::Payment, Method::GET, "/api/payments/order/1", Some(&for_cart), None).await.problem(401);
    t.call(Service::Cart, Method::GET, "/api/cart", Some(&for_payment), None).await.problem(401);
    // The right callee lets it through (no such payment: 404, not 401).
    t.call(Service::Payment, Method::GET, "/api/payments/order/1", Some(&for_payment), None)
        .await
        .problem(404);

    // A USER on ADMIN and service-only endpoints.
    let product = json!({"name": "Cable", "price": 9.99, "stock": 5});
    t.call(Service::Product, Method::POST, "/api/products", Some(&bob), Some(product)).await.problem(403);
    t.call(Service::Product, Method::DELETE, "/api/products/1", Some(&bob), None).await.problem(403);
    let charge = json!({"orderId": 1, "userId": 1, "amount": 10});
    t.call(Service::Payment, Method::POST, "/api/payments/process", Some(&bob), Some(charge))
        .await
        .problem(403);
    t.call(Service::Payment, Method::GET, "/api/payments/order/1", Some(&bob), None).await.problem(403);

    // Registration and login.
    t.register("bob").await.problem(409);
    let bad = json!({"username": "x", "email": "nope", "password": "short"});
    t.call(Service::Auth, Method::POST, "/api/auth/register", None, Some(bad)).await.problem(400);
    let unknown = t.login("nobody", PASSWORD).await;
    let wrong = t.login("bob", "wrong-password").await;
    assert_eq!(unknown.problem(401), wrong.problem(401), "unknown user and wrong password must look alike");

    // The carts' side door asked with a malformed body: no hold is taken (bob checks out below).
    let order_service = t.service_token(Service::Order, Service::Cart);
    let cases = [
        json!({"completed": {"orderId": "x"}}),
        json!({"completed": {"orderId": 1}}),
        json!({"x": 1}),
        json!(7),
    ];
    for bad in cases {
        let path = "/internal/carts/bob/checkout";
        t.call(Service::Cart, Method::POST, path, Some(&order_service), Some(bad)).await.problem(400);
    }

    // Unknown endpoints and methods.
    t.call(Service::Cart, Method::GET, "/api/nothing", Some(&bob), None).await.problem(404);
    t.call(Service::Cart, Method::PATCH, "/api/cart", Some(&bob), None).await.problem(405);

    assert_eq!(t.cart(&bob).await, cart_before, "bad input changed the cart");
    assert_eq!(t.products().await, products_before, "bad input changed the catalog");

    // Checkout of an empty cart; another user's order.
    let amy = t.user("amy").await;
    t.checkout(&amy).await.problem(400);
    let order = t.checkout(&bob).await.ok(201).clone();
    let path = format!("/api/orders/{}", id_of(&order));
    t.call(Service::Order, Method::GET, &path, Some(&amy), None).await.problem(404);
    t.call(Service::Order, Method::GET, "/api/orders/424242", Some(&bob), None).await.problem(404);
    assert_eq!(
        t.call(Service::Order, Method::GET, "/api/orders", Some(&amy), None).await.ok(200),
        &json!([]),
        "amy sees none of bob's orders"
    );
}

async fn set_status(t: &TestApp, path: &str, token: &str, status: &str) -> Reply {
    t.call(Service::Order, Method::PUT, path, Some(token), Some(json!({ "status": status }))).await
}

#[tokio::test]
async fn admins_move_orders_forward_only() {
    let t = TestApp::spawn_with(|c| c.payment_success_rate = 1.0).await;
    let ann = t.user("ann").await;
    let admin = t.admin().await;
    t.add(&ann, MOUSE, 1).await.ok(200);
    let order = t.checkout(&ann).await.ok(201).clone();
    let path = format!("/api/orders/{}/status", id_of(&order));
    set_status(&t, &path, &ann, "SHIPPED").await.problem(403);
    set_status(&t, &path, &admin, "DELIVERED").await.problem(409);
    set_status(&t, &path, &admin, "BOGUS").await.problem(400);
    set_status(&t, &path, &admin, "CANCELLED").await.problem(409);
    assert_eq!(set_status(&t, &path, &admin, "SHIPPED").await.ok(200)["status"], "SHIPPED");
    set_status(&t, &path, &admin, "PAID").await.problem(409);
    assert_eq!(set_status(&t, &path, &admin, "DELIVERED").await.ok(200)["status"], "DELIVERED");
    set_status(&t, &path, &admin, "SHIPPED").await.problem(409);

    // Products: admins write the catalog.
    let created = t
        .call(
            Service::Product,
            Method::POST,
            "/api/products",
            Some(&admin),
            Some(json!({"name": "Cable", "price": "9.5", "stock": 5})),
        )
        .await
        .ok(201)
        .clone();
    assert_eq!(created["price"].to_string(), "9.50");
    let path = format!("/api/products/{}", id_of(&created));
    let updated = t
        .call(
            Service::Product,
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({"name": "USB Cable", "price": 7, "stock": 9})),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!((updated["name"].as_str(), updated["stock"].as_i64()), (Some("USB Cable"), Some(9)));
    assert_eq!(
        t.call(Service::Product, Method::DELETE, &path, Some(&admin), None).await.status.as_u16(),
        204
    );
    t.call(Service::Product, Method::GET, &path, None, None).await.problem(404);
}

#[tokio::test]
async fn carts_orders_and_logins_survive_a_restart() {
    let t = TestApp::spawn_with(|c| {
        c.payment_success_rate = 1.0;
        c.jwt_secret = None; // embedded mode keeps its own secret in the data dir
    })
    .await;
    let sam = t.user("sam").await;
    t.add(&sam, LAPTOP, 1).await.ok(200);
    let order = t.checkout(&sam).await.ok(201).clone();
    t.add(&sam, MOUSE, 4).await.ok(200);
    let cart = t.cart(&sam).await;
    let catalog = t.products().await;

    let t = t.restart().await;
    assert_eq!(t.cart(&sam).await, cart, "the old token works and the cart is as it was");
    let fresh = t.token("sam", PASSWORD).await;
    let orders = t.call(Service::Order, Method::GET, "/api/orders", Some(&fresh), None).await.ok(200).clone();
    assert_eq!(orders, json!([order]));
    assert_eq!(t.products().await, catalog, "the catalog is not seeded twice");
    t.add(&fresh, MOUSE, 1).await.ok(200);
    assert_eq!(quantity_of(&t.cart(&sam).await, MOUSE), 5);
    assert_eq!(t.checkout(&fresh).await.ok(201)["status"], "PAID");
}

#[tokio::test]
async fn the_shop_binary_serves_all_five_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let ports: Vec<u16> = (0..5).map(|_| common::free_port()).collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shop"));
    cmd.env("SHOP_DATA_DIR", dir.path())
        .env("SHOP_BCRYPT_COST", "4")
        .env("SHOP_ADMIN_PASSWORD", "binary-admin-1");
    for (name, port) in ["AUTH", "PRODUCT", "CART", "PAYMENT", "ORDER"].iter().zip(&ports) {
        cmd.env(format!("SHOP_{name}_PORT"), port.to_string());
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("shop starts");
    let client = reqwest::Client::new();
    for port in &ports {
        let url = format!("http://127.0.0.1:{port}/health");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                }
                other => panic!("{url} never answered: {other:?}"),
            }
        }
    }
    let login = client
        .post(format!("http://127.0.0.1:{}/api/auth/login", ports[0]))
        .json(&json!({"username": "admin", "password": "binary-admin-1"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status().as_u16(), 200);
    let products: Value = client
        .get(format!("http://127.0.0.1:{}/api/products", ports[1]))
        .send()
        .await
        .expect("products")
        .json()
        .await
        .expect("json");
    assert_eq!(products[0]["name"], "Laptop");
    assert_eq!(products[0]["price"].to_string(), "999.99");
    assert!(dir.path().join("order.db").exists());

    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exit");
    assert!(status.success(), "shop exited with {status}");
}

/// The load tool aimed at `t`: 40 checkouts of 8 users at concurrency 8, beside a login flood
/// of 2, audited after, the test process's CPU watched.
fn load_config(t: &TestApp) -> LoadConfig {
    let url = |s: Service| format!("http://{}", t.app.addr(s));
    let databases = shop_http::tools::audit::AuditConfig {
        storage: shop_http::StorageConfig {
            data_dir: t.dir.path().to_path_buf(),
            database_urls: shop_http::config::DatabaseUrls::default(),
        },
        recovery_threshold_ms: 0,
    };
    LoadConfig {
        auth_url: url(Service::Auth),
        cart_url: url(Service::Cart),
        order_url: url(Service::Order),
        users: 8,
        checkouts: 40,
        concurrency: 8,
        rate: None,
        product_id: MOUSE,
        // Checkouts take stock: the tool makes a product of its own, as admin.
        admin_password: Some(common::ADMIN_PASSWORD.to_owned()),
        product_url: url(Service::Product),
        gateway: None,
        json: false,
        scenario: Scenario::Checkout,
        requests: 0,
        health_url: String::new(),
        database_url: None,
        seconds: 1.0,
        login_flood: 2,
        audit: true,
        // The system runs in this process: its CPU during the checkouts is measured.
        cpu_of: vec![format!("system={}", std::process::id())],
        databases,
        duration: None,
        think_time: 0.0,
        ramp: false,
        ramp_step: None,
        step_seconds: 10.0,
        ramp_p99_ms: 100.0,
        max_rate: None,
        slice_seconds: 1.0,
        report: None,
        login_prefix: "grow".to_owned(),
        existing_users: 0,
        existing_products: 0,
        password: common::PASSWORD.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_drives_the_system_closed_and_open_loop() {
    let t = TestApp::spawn().await;
    let config = load_config(&t);
    let closed = shop_http::tools::load::run(config.clone(), true).await.expect("load runs");
    assert_eq!(closed.paid + closed.cancelled, 40, "{closed:?}");
    assert_eq!(closed.checkout_errors(), 0, "{:?}", closed.errors);
    assert_eq!(closed.endpoints["checkout"].requests, 40);
    assert_eq!(closed.endpoints["checkout_e2e"].requests, 40);
    assert_eq!(closed.endpoints["register"].requests, 8);
    let cpu = closed.cpu_seconds.get("system").copied();
    assert!(cpu.is_some_and(|s| s > 0.0 && s < closed.seconds * 64.0), "CPU of the checkouts: {cpu:?}");
    assert!(closed.endpoints["login_flood"].requests >= 2, "the flood logged in: {closed:?}");
    let c = &closed.endpoints["checkout"];
    assert!(c.p50_ms <= c.p90_ms && c.p90_ms <= c.p99_ms && c.p99_ms <= c.max_ms, "{c:?}");
    let audit = closed.audit.as_ref().expect("the load was asked to audit");
    assert!(audit.is_clean(), "{:?}", audit.violations);
    assert_eq!(audit.orders, 40);

    let open = shop_http::tools::load::run(
        shop_http::tools::load::LoadConfig {
            rate: Some(100.0),
            checkouts: 20,
            login_flood: 0,
            ..config.clone()
        },
        true,
    )
    .await
    .expect("load runs");
    assert_eq!(open.paid + open.cancelled, 20);
    assert!(open.seconds >= 0.19, "20 checkouts at 100/s take at least 0.19 s: {open:?}");
    assert_eq!(open.audit.as_ref().map(|a| a.orders), Some(60));
    let unwatchable = LoadConfig { cpu_of: vec!["system".into()], ..config.clone() };
    let refused = shop_http::tools::load::run(unwatchable, true).await.expect_err("NAME=PID is asked for");
    assert!(refused.contains("NAME=PID"), "{refused}");

    // The same run through the gateway instead of the five ports (the others are unreachable).
    let dead = "http://127.0.0.1:1".to_owned();
    let gateway = shop_http::tools::load::run(
        shop_http::tools::load::LoadConfig {
            gateway: Some(format!("http://{}", t.app.gateway_addr())),
            checkouts: 20,
            login_flood: 0,
            auth_url: dead.clone(),
            cart_url: dead.clone(),
            order_url: dead.clone(),
            product_url: dead,
            ..config.clone()
        },
        true,
    )
    .await
    .expect("load through the gateway runs");
    assert_eq!(gateway.paid + gateway.cancelled, 20, "{gateway:?}");
    assert_eq!(gateway.checkout_errors(), 0, "{:?}", gateway.errors);
    assert_eq!(gateway.audit.as_ref().map(|a| a.orders), Some(80));

    let health = shop_http::tools::load::run(
        shop_http::tools::load::LoadConfig {
            scenario: Scenario::Health,
            requests: 200,
            health_url: t.url(Service::Cart, "/health"),
            ..config.clone()
        },
        true,
    )
    .await
    .expect("health load runs");
    assert!(health.errors.is_empty(), "{:?}", health.errors);
    assert_eq!(health.endpoints["health"].requests, 200);
    assert!(health.per_second > 0.0);

    let probe = t.dir.path().join("probe.db");
    let commits = shop_http::tools::load::run(
        shop_http::tools::load::LoadConfig {
            scenario: Scenario::Commits,
            database_url: Some(format!("sqlite://{}", probe.display())),
            seconds: 0.3,
            concurrency: 4,
            ..config
        },
        true,
    )
    .await
    .expect("commit probe runs");
    assert!(commits.operations > 0, "{commits:?}");
    assert!(commits.per_second > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_tool_runs_for_a_duration_ramps_to_a_sustained_rate_and_draws_its_report() {
    let t = TestApp::spawn().await;
    let base = LoadConfig { login_flood: 0, audit: false, cpu_of: Vec::new(), ..load_config(&t) };
    let run = |config: LoadConfig| async move { shop_http::tools::load::run(config, true).await };

    // For a duration rather than a count, with the report written as JSON and a picture.
    let report = t.dir.path().join("reports").join("run");
    let timed =
        LoadConfig { duration: Some(1.0), slice_seconds: 0.25, report: Some(report.clone()), ..base.clone() };
    let timed = run(timed).await.expect("a timed load runs");
    let done = timed.paid + timed.cancelled;
    assert!(done > 0 && timed.checkout_errors() == 0, "{timed:?}");
    assert_eq!(timed.operations, done, "each checkout placed was answered");
    assert!(timed.seconds >= 1.0, "checkouts were started for a second: {timed:?}");
    let sliced: u64 = timed.timeline.iter().map(|s| s.done).sum();
    assert_eq!(sliced, done as u64, "every checkout lies in one slice: {:?}", timed.timeline);
    assert!(timed.timeline.len() >= 4, "a second in quarters: {:?}", timed.timeline);
    assert!(timed.timeline.iter().all(|s| s.p50_ms <= s.p99_ms), "{:?}", timed.timeline);
    let tail = timed.distribution.last().copied();
    assert_eq!(tail.map(|[p, _]| p), Some(100.0), "the distribution runs to the maximum: {tail:?}");
    assert!(timed.distribution.windows(2).all(|w| w[0][0] < w[1][0] && w[0][1] <= w[1][1]));
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.with_extension("json")).expect("the JSON report"),
    )
    .expect("JSON");
    assert_eq!(written["paid"].as_u64(), Some(timed.paid as u64), "{written}");
    let page = std::fs::read_to_string(report.with_extension("html")).expect("the picture");
    assert_eq!(page.matches("<svg").count(), 3, "throughput, latency over time, distribution");
    assert!(page.contains("Throughput") && page.contains("Latency distribution"), "{page}");
    assert!(
        !page.contains("<script") && !page.contains("src=") && !page.contains("href="),
        "self-contained: {page}"
    );

    // A ramp that climbs to its ceiling: two steps, both kept up (checkouts in this process
    // answer in well under a second, and p99 may be anything up to 10 s).
    let ramp = LoadConfig {
        ramp: true,
        rate: Some(20.0),
        step_seconds: 0.5,
        max_rate: Some(40.0),
        ramp_p99_ms: 10_000.0,
        ..base.clone()
    };
    let climbed = run(ramp.clone()).await.expect("the ramp runs");
    let steps = climbed.ramp.as_ref().expect("a ramp report");
    let rates: Vec<f64> = steps.steps.iter().map(|s| s.rate).collect();
    assert_eq!(rates, [20.0, 40.0], "{steps:?}");
    assert_eq!(steps.steps.iter().map(|s| s.offered).collect::<Vec<_>>(), [10, 20]);
    assert!(steps.steps.iter().all(|s| s.kept_up && s.completed == s.offered), "{steps:?}");
    assert_eq!(steps.sustained_rate, Some(40.0), "{steps:?}");
    assert!(steps.stopped.contains("--max-rate"), "{}", steps.stopped);
    assert_eq!(climbed.paid + climbed.cancelled, 30, "{climbed:?}");

    // One whose first step's p99 is already too long: nothing is sustained, and it says why.
    let strict = run(LoadConfig { ramp_p99_ms: 0.001, ..ramp }).await.expect("the ramp runs");
    let steps = strict.ramp.as_ref().expect("a ramp report");
    assert_eq!(steps.steps.len(), 1, "{steps:?}");
    assert!(!steps.steps[0].kept_up && steps.sustained_rate.is_none(), "{steps:?}");
    assert!(steps.stopped.contains("p99"), "{}", steps.stopped);

    // In an open loop, users scale with the rate: 40/s with a think time of 1 s is 40 users.
    let open = run(LoadConfig { rate: Some(40.0), checkouts: 8, think_time: 1.0, ..base.clone() })
        .await
        .expect("the open loop runs");
    assert_eq!(open.endpoints["register"].requests, 40, "{open:?}");
    assert_eq!(open.paid + open.cancelled, 8);

    for (bad, why) in [
        (LoadConfig { duration: Some(0.0), ..base.clone() }, "--duration"),
        (LoadConfig { think_time: -1.0, ..base.clone() }, "--think-time"),
        (LoadConfig { ramp: true, ramp_step: Some(f64::NAN), ..base.clone() }, "--ramp-step"),
        (LoadConfig { slice_seconds: 0.0, ..base.clone() }, "--slice-seconds"),
    ] {
        let refused = run(bad).await.expect_err("refused");
        assert!(refused.contains(why), "{why}: {refused}");
    }

    // Users already there page through their orders and the catalog.
    for n in 0..2 {
        let token = t.user(&format!("grow{n}")).await;
        for _ in 0..6 {
            t.add(&token, MOUSE, 1).await.ok(200);
            t.checkout(&token).await.ok(201);
        }
    }
    let lists = LoadConfig {
        scenario: Scenario::Lists,
        users: 2,
        existing_users: 2,
        existing_products: 5,
        concurrency: 2,
        requests: 40,
        ..base.clone()
    };
    let read = run(lists.clone()).await.expect("the lists load runs");
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    // Six orders each, in pages of 5: every first page links a next one.
    for endpoint in ["orders", "orders_next", "products", "products_deep"] {
        assert_eq!(read.endpoints[endpoint].requests, 10, "10 rounds: {endpoint} {read:?}");
    }
    let stranger =
        run(LoadConfig { login_prefix: "nobody".into(), ..lists }).await.expect_err("no such user");
    assert!(stranger.contains("nobody0"), "{stranger}");

    // The health scenario for a duration.
    let health = LoadConfig {
        scenario: Scenario::Health,
        duration: Some(0.3),
        health_url: t.url(Service::Cart, "/health"),
        ..base
    };
    let health = run(health).await.expect("the health load runs");
    assert!(health.errors.is_empty() && health.endpoints["health"].requests > 0, "{health:?}");
    assert_eq!(health.operations as u64, health.endpoints["health"].requests);
    assert!(health.seconds >= 0.3, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_audit_reads_the_databases_and_fails_on_a_broken_invariant() {
    let t = TestApp::spawn().await;
    let token = t.user("auditee").await;
    t.add(&token, MOUSE, 1).await.ok(200);
    t.checkout(&token).await.ok(201);
    let audit = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_shop"))
            .args(["audit", "--data-dir"])
            .arg(t.dir.path())
            // Its logs go to standard error: the report on standard output stays one JSON value.
            .env("SHOP_LOG", "debug")
            .env_remove("SHOP_PRODUCT_DATABASE_URL")
            .env_remove("SHOP_PAYMENT_DATABASE_URL")
            .env_remove("SHOP_ORDER_DATABASE_URL")
            .output()
            .expect("shop audit runs")
    };
    let clean = audit();
    assert!(clean.status.success(), "{clean:?}");
    let report: Value = serde_json::from_slice(&clean.stdout).expect("a JSON report");
    assert_eq!((report["orders"].clone(), report["payments"].clone()), (json!(1), json!(1)), "{report}");
    assert_eq!(report["violations"], json!([]));

    // An order with no payment, left PENDING, as a saga that died half-way would leave it.
    let new = shop_actors::model::NewOrder {
        username: "auditee".into(),
        items: Vec::new(),
        total_amount: Decimal::new(100, 2),
        idempotency_key: None,
        checkout_id: None,
        traceparent: None,
    };
    let pending = t.app.databases().order.orders().create(new).await.expect("order stored");
    let broken = audit();
    assert!(!broken.status.success(), "the audit must fail: {broken:?}");
    let report: Value = serde_json::from_slice(&broken.stdout).expect("a JSON report");
    let violations = report["violations"].to_string();
    assert!(violations.contains(&format!("order {} is still PENDING", pending.id)), "{report}");
}

/// Every page of a list, following `Link: <…>; rel="next"`: the pages' ids in order.
async fn pages(t: &TestApp, service: Service, first: &str, token: Option<&str>) -> Vec<Vec<i64>> {
    let mut next = Some(first.to_owned());
    let mut pages = Vec::new();
    while let Some(path) = next.take() {
        let mut req = t.client.get(t.url(service, &path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("request sent");
        assert_eq!(resp.status(), 200, "{path}");
        next = resp.headers().get("link").map(|l| {
            let l = l.to_str().expect("a text Link");
            let (target, rel) = l.split_once(">; ").expect("<target>; rel");
            assert_eq!(rel, "rel=\"next\"", "{l}");
            target.trim_start_matches('<').to_owned()
        });
        let body: Value = resp.json().await.expect("a JSON array");
        pages.push(body.as_array().expect("array").iter().map(id_of).collect());
        assert!(pages.len() < 50, "the pages never end");
    }
    pages
}

#[tokio::test]
async fn lists_come_in_pages_linked_by_a_cursor_and_bad_pages_are_refused() {
    let t = TestApp::spawn().await;
    let admin = t.admin().await;
    for i in 0..3 {
        let body = json!({ "name": format!("Paged {i}"), "price": "1.00", "stock": 100 });
        t.call(Service::Product, Method::POST, "/api/products", Some(&admin), Some(body)).await.ok(201);
    }
    let all: Vec<i64> = t.products().await.as_array().expect("array").iter().map(id_of).collect();
    assert!(all.len() >= 5, "the seed and three more: {all:?}");
    let paged = pages(&t, Service::Product, "/api/products?limit=2", None).await;
    assert!(paged.iter().all(|p| p.len() <= 2) && paged.len() == all.len().div_ceil(2), "{paged:?}");
    assert_eq!(paged.concat(), all, "the pages, in order, are the whole catalog in id order");

    // A user's orders, newest first, two to a page.
    let ann = t.user("ann").await;
    let product = t.bulk_product().await;
    let mut made = Vec::new();
    for _ in 0..5 {
        t.add(&ann, product, 1).await.ok(200);
        made.push(id_of(t.checkout(&ann).await.ok(201)));
    }
    made.reverse();
    let paged = pages(&t, Service::Order, "/api/orders?limit=2", Some(&ann)).await;
    assert_eq!(paged, vec![made[..2].to_vec(), made[2..4].to_vec(), made[4..].to_vec()]);
    // Nobody else's orders are in anyone's pages.
    let bob = t.user("bob").await;
    assert_eq!(pages(&t, Service::Order, "/api/orders", Some(&bob)).await, vec![Vec::<i64>::new()]);

    for bad in [
        "/api/products?limit=0",
        "/api/products?limit=101",
        "/api/products?limit=two",
        "/api/products?page=2",
    ] {
        let reply = t.call(Service::Product, Method::GET, bad, None, None).await;
        reply.problem(400);
    }
    t.call(Service::Order, Method::GET, "/api/orders?after=x", Some(&ann), None).await.problem(400);
    t.app.stop().await;
}
