//! What the people who run the services use: each service's OpenAPI document (and real answers
//! checked against it), `/metrics`, `/ready`, an order's history and the OTLP export, in
//! embedded mode.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};
use shop_services::Service;

/// A service's document, fetched and checked to be OpenAPI 3 with paths.
async fn document(t: &TestApp, service: Service) -> Value {
    let reply = t.call(service, Method::GET, "/openapi.json", None, None).await;
    let doc = reply.ok(200).clone();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "{}: not OpenAPI 3: {version:?}", service.name());
    assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()), "{}: no paths", service.name());
    doc
}

/// Follows `#/components/...` references.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            resolve(doc, doc.pointer(pointer).unwrap_or_else(|| panic!("dangling reference {r}")))
        }
        None => v,
    }
}

/// Whether `value` conforms to `schema` (the subset utoipa writes: type, required, properties,
/// items, enum, oneOf/allOf); the first mismatch, with where it was.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(all) = schema["allOf"].as_array() {
        return all.iter().try_for_each(|s| conforms(doc, s, value, at));
    }
    if let Some(any) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        return if any.iter().any(|s| conforms(doc, s, value, at).is_ok()) {
            Ok(())
        } else {
            Err(format!("{at}: {value} matches none of {any:?}"))
        };
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.iter().any(|t| *t == kind || (*t == "number" && kind == "integer")) {
        return Err(format!("{at}: {value} is {kind}, the document says {types:?}"));
    }
    if let Value::Object(fields) = value {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !fields.contains_key(required) {
                return Err(format!("{at}: required field {required} missing from {value}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, field) in fields {
            match properties.and_then(|p| p.get(name)) {
                Some(s) => conforms(doc, s, field, &format!("{at}.{name}"))?,
                None if schema["additionalProperties"] == json!(false) => {
                    return Err(format!("{at}: field {name} is not in the document"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, item, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Checks one real answer against the document: its status is declared for the operation, and
/// its body conforms to the declared schema of that status and content type.
fn check_answer(doc: &Value, method: &str, path: &str, reply: &common::Reply) {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not in the document");
    let status = reply.status.as_u16().to_string();
    let response = resolve(doc, &operation["responses"][&status]);
    assert!(response.is_object(), "{method} {path} answered {status}, which the document does not declare");
    let content_type = reply.content_type.split(';').next().unwrap_or_default();
    if reply.body.is_null() {
        return;
    }
    let declared = &response["content"][content_type];
    assert!(declared.is_object(), "{method} {path} {status}: {content_type} is not declared: {response}");
    if let Err(e) = conforms(doc, &declared["schema"], &reply.body, "body") {
        panic!("{method} {path} {status} does not conform: {e}");
    }
}

#[tokio::test]
async fn every_service_documents_its_routes_and_real_answers_conform() {
    let t = TestApp::on(Backend::Sqlite, |c| c.payment_success_rate = 1.0).await;
    let mut docs = HashMap::new();
    for service in Service::ALL {
        docs.insert(service, document(&t, service).await);
        let page = t.client.get(t.url(service, "/docs/")).send().await.expect("docs page");
        assert_eq!(page.status(), 200, "{}: /docs/", service.name());
        let html = page.text().await.expect("html");
        assert!(html.contains("swagger"), "{}: /docs/ is not the Swagger UI page", service.name());
    }
    let auth = &docs[&Service::Auth];
    let register = t.register("ann").await;
    check_answer(auth, "post", "/api/auth/register", &register);
    check_answer(auth, "post", "/api/auth/register", &t.register("ann").await);
    let login = t.login("ann", common::PASSWORD).await;
    check_answer(auth, "post", "/api/auth/login", &login);
    check_answer(auth, "post", "/api/auth/login", &t.login("ann", "wrong password").await);
    let ann = login.body["token"].as_str().expect("token").to_owned();
    check_answer(
        auth,
        "get",
        "/api/auth/me",
        &t.call(Service::Auth, Method::GET, "/api/auth/me", Some(&ann), None).await,
    );

    let product = &docs[&Service::Product];
    let products = t.call(Service::Product, Method::GET, "/api/products", None, None).await;
    check_answer(product, "get", "/api/products", &products);
    check_answer(
        product,
        "get",
        "/api/products/{id}",
        &t.call(Service::Product, Method::GET, "/api/products/1", None, None).await,
    );
    check_answer(
        product,
        "get",
        "/api/products/{id}",
        &t.call(Service::Product, Method::GET, "/api/products/999999", None, None).await,
    );
    let refused = t
        .call(
            Service::Product,
            Method::POST,
            "/api/products",
            Some(&ann),
            Some(json!({"name": "x", "price": 1, "stock": 1})),
        )
        .await;
    check_answer(product, "post", "/api/products", &refused);

    let cart = &docs[&Service::Cart];
    let added = t.add(&ann, 1, 2).await;
    check_answer(cart, "post", "/api/cart/add", &added);
    check_answer(cart, "post", "/api/cart/add", &t.add(&ann, 1, 0).await);
    check_answer(
        cart,
        "get",
        "/api/cart",
        &t.call(Service::Cart, Method::GET, "/api/cart", Some(&ann), None).await,
    );

    let order = &docs[&Service::Order];
    let placed = t.checkout(&ann).await;
    check_answer(order, "post", "/api/orders", &placed);
    check_answer(order, "post", "/api/orders", &t.checkout(&ann).await);
    let id = placed.body["id"].as_i64().expect("order id");
    check_answer(
        order,
        "get",
        "/api/orders",
        &t.call(Service::Order, Method::GET, "/api/orders", Some(&ann), None).await,
    );
    let path = format!("/api/orders/{id}");
    check_answer(
        order,
        "get",
        "/api/orders/{id}",
        &t.call(Service::Order, Method::GET, &path, Some(&ann), None).await,
    );
    check_answer(
        order,
        "get",
        "/api/orders/{id}",
        &t.call(Service::Order, Method::GET, &path, None, None).await,
    );

    let path = format!("/api/orders/{id}/history");
    check_answer(
        order,
        "get",
        "/api/orders/{id}/history",
        &t.call(Service::Order, Method::GET, &path, Some(&ann), None).await,
    );

    let payment = &docs[&Service::Payment];
    let path = format!("/api/payments/order/{id}");
    check_answer(
        payment,
        "get",
        "/api/payments/order/{order_id}",
        &t.call(Service::Payment, Method::GET, &path, Some(&ann), None).await,
    );
    let order_service = t.service_token(Service::Order, Service::Payment);
    check_answer(
        payment,
        "get",
        "/api/payments/order/{order_id}",
        &t.call(Service::Payment, Method::GET, &path, Some(&order_service), None).await,
    );

    for service in Service::ALL {
        let doc = &docs[&service];
        check_answer(doc, "get", "/health", &t.call(service, Method::GET, "/health", None, None).await);
        check_answer(doc, "get", "/ready", &t.call(service, Method::GET, "/ready", None, None).await);
    }
}

/// The samples of a Prometheus text exposition, by name and label set; panics on a line that
/// is not one.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut found = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a value in {line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "not a metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "labels of {line:?}"
            );
        }
        found.insert(series.to_owned(), value);
    }
    found
}

async fn metrics(t: &TestApp, service: Service) -> HashMap<String, f64> {
    let resp = t.client.get(t.url(service, "/metrics")).send().await.expect("metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    samples(&resp.text().await.expect("text"))
}

#[tokio::test]
async fn metrics_count_checkouts_as_the_orders_table_does_and_requests_by_route() {
    let t = TestApp::on(Backend::Sqlite, |_| {}).await;
    let bulk = t.bulk_product().await;
    let names: Vec<String> = (0..8).map(|i| format!("meter{i}")).collect();
    let users: Vec<String> = futures::future::join_all(names.iter().map(|n| t.user(n))).await;
    let runs = users.iter().map(|token| async {
        for _ in 0..5 {
            t.add(token, bulk, 1).await.ok(200);
            t.checkout(token).await.ok(201);
        }
    });
    futures::future::join_all(runs).await;
    // Refused before any order: nothing in the cart.
    for name in ["emptyone", "emptytwo", "emptythree"] {
        let token = t.user(name).await;
        t.checkout(&token).await.problem(400);
    }

    let report = t.app.databases().audit().await.expect("audit");
    let order = metrics(&t, Service::Order).await;
    let count = |outcome: &str| {
        order.get(&format!("shop_checkouts_total{{service=\"order\",outcome=\"{outcome}\"}}")).copied()
    };
    let table = |status: &str| report.orders_by_status.get(status).copied().unwrap_or(0) as f64;
    assert_eq!(count("paid"), Some(table("PAID")), "{order:?}");
    assert_eq!(count("cancelled"), Some(table("CANCELLED")), "{order:?}");
    assert_eq!(count("paid").unwrap_or(0.0) + count("cancelled").unwrap_or(0.0), 40.0);
    assert_eq!(count("refused"), Some(3.0), "the three empty carts");
    let placed =
        "shop_http_requests_total{service=\"order\",method=\"POST\",route=\"/api/orders\",status=\"201\"}";
    assert_eq!(order.get(placed).copied(), Some(40.0), "{order:?}");
    assert!(order.contains_key("shop_actors_live{service=\"order\",kind=\"order\"}"), "{order:?}");
    assert!(order.contains_key("shop_payment_pool_in_flight{service=\"order\"}"), "{order:?}");

    let cart = metrics(&t, Service::Cart).await;
    let adds =
        "shop_http_requests_total{service=\"cart\",method=\"POST\",route=\"/api/cart/add\",status=\"200\"}";
    assert_eq!(cart.get(adds).copied(), Some(40.0), "{cart:?}");
    assert_eq!(cart.get("shop_actors_live{service=\"cart\",kind=\"cart\"}").copied(), Some(11.0), "{cart:?}");
    // Each service keeps its own figures: the order service counted no cart request.
    assert!(!order.keys().any(|k| k.contains("/api/cart")), "{order:?}");
    let auth = metrics(&t, Service::Auth).await;
    assert!(auth.contains_key("shop_login_hashing_waiting{service=\"auth\"}"), "{auth:?}");

    // The saga's durations: one per order made, bucket counts cumulative up to +Inf.
    let made = order.get("shop_checkout_duration_seconds_count{service=\"order\"}").copied();
    assert_eq!(made, Some(40.0), "{order:?}");
    let inf = order.get("shop_checkout_duration_seconds_bucket{service=\"order\",le=\"+Inf\"}").copied();
    assert_eq!(inf, Some(40.0), "{order:?}");
    assert!(order.get("shop_checkout_duration_seconds_sum{service=\"order\"}").is_some_and(|s| *s > 0.0));
    // Every event went out (embedded checkouts wait for theirs): two per order, none left.
    let relayed = order.get("shop_outbox_relay_lag_seconds_count{service=\"order\"}").copied();
    assert_eq!(relayed, Some(80.0), "ORDER_CREATED and the outcome of 40 orders: {order:?}");
    assert_eq!(order.get("shop_outbox_backlog{service=\"order\"}").copied(), Some(0.0), "{order:?}");
    assert_eq!(order.get("shop_outbox_oldest_unsent_seconds{service=\"order\"}").copied(), Some(0.0));
    // Every service shows its database connections (SQLite: a writer and readers).
    for (service, figures) in [(Service::Order, &order), (Service::Cart, &cart), (Service::Auth, &auth)] {
        for lane in ["writer", "readers"] {
            for name in [
                "shop_db_connections_in_use",
                "shop_db_waiting",
                "shop_db_waits_total",
                "shop_db_wait_seconds_total",
            ] {
                let key = format!("{name}{{service=\"{}\",lane=\"{lane}\"}}", service.name());
                assert!(figures.contains_key(&key), "no {key}: {figures:?}");
            }
        }
    }
    // Writes counted, and the commits that held them: never more commits than writes.
    let work = cart.get("shop_db_work_total{service=\"cart\",lane=\"writer\"}").copied().unwrap_or(0.0);
    let commits = cart.get("shop_db_commits_total{service=\"cart\",lane=\"writer\"}").copied();
    assert!(work >= 80.0, "40 adds and 40 checkouts wrote to the cart database: {cart:?}");
    assert!(commits.is_some_and(|c| c >= 1.0 && c <= work), "{commits:?} commits for {work} writes");
    assert!(!cart.contains_key("shop_db_commits_total{service=\"cart\",lane=\"readers\"}"), "{cart:?}");
    let writes = cart.get("shop_db_wait_seconds_total{service=\"cart\",lane=\"writer\"}").copied();
    assert!(writes.is_some_and(|s| s > 0.0), "40 adds and checkouts queued on the cart's writer: {writes:?}");
    // Each order's outcome reached its cart, and how long that took was counted (the outcome's
    // event is applied just after the checkout answers: asked again for a while).
    let key = "shop_order_event_latency_seconds_count{service=\"cart\"}";
    let mut applied = cart.get(key).copied();
    for _ in 0..50 {
        if applied == Some(40.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        applied = metrics(&t, Service::Cart).await.get(key).copied();
    }
    assert_eq!(applied, Some(40.0), "40 outcomes applied to carts: {cart:?}");
}

/// A TCP forwarder to the MySQL server that can be cut and restored: the database "goes away"
/// for whatever connects through it, and comes back.
struct Cable {
    addr: std::net::SocketAddr,
    target: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Cable {
    async fn to(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the cable");
        let cable = Self {
            addr: listener.local_addr().expect("addr"),
            target: target.to_owned(),
            tasks: Arc::default(),
        };
        cable.serve(listener);
        cable
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("tasks").push(conn);
            }
        });
        self.tasks.lock().expect("tasks").push(accept);
    }

    /// Every connection through the cable is closed and no new one is accepted.
    fn cut(&self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }

    async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.expect("bind the cable again");
        self.serve(listener);
    }
}

#[tokio::test]
async fn ready_answers_503_while_the_database_is_away_and_200_when_it_is_back() {
    let server = shop_services::testing::mysql_server_url();
    let authority = server
        .trim_start_matches("mysql://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let cable = Cable::to(&authority).await;
    let via = cable.addr.to_string();
    let t = TestApp::on(Backend::MySql, |c| {
        let url = c.storage.database_url(Service::Order).replacen(&authority, &via, 1);
        c.storage.set_database_url(Service::Order, url);
    })
    .await;
    let ready = t.call(Service::Order, Method::GET, "/ready", None, None).await;
    assert_eq!(ready.ok(200)["status"], "READY");

    cable.cut();
    let away = t.call(Service::Order, Method::GET, "/ready", None, None).await;
    let detail = away.problem(503);
    assert!(detail.contains("database"), "{detail}");
    assert_eq!(
        t.call(Service::Product, Method::GET, "/ready", None, None).await.status,
        200,
        "the others stay ready"
    );

    cable.restore().await;
    // Each probe may meet one pooled connection that died with the cable (and drops it); a
    // readiness probe is asked again, as an orchestrator does.
    let mut back = t.call(Service::Order, Method::GET, "/ready", None, None).await;
    for _ in 0..40 {
        if back.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        back = t.call(Service::Order, Method::GET, "/ready", None, None).await;
    }
    assert_eq!(back.ok(200)["status"], "READY");
}

/// The steps of `id`'s history as `token` sees them, checked to be in time order.
async fn history(t: &TestApp, token: &str, id: i64) -> Vec<(String, String)> {
    let path = format!("/api/orders/{id}/history");
    let reply = t.call(Service::Order, Method::GET, &path, Some(token), None).await;
    let body = reply.ok(200);
    assert_eq!(body["orderId"], json!(id), "{body}");
    let steps = body["steps"].as_array().expect("steps");
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        steps.iter().map(|s| s["at"].as_str().expect("at").parse().expect("a time")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order: {body}");
    steps
        .iter()
        .map(|s| {
            (s["step"].as_str().expect("step").to_owned(), s["service"].as_str().expect("service").to_owned())
        })
        .collect()
}

fn names(steps: &[(String, String)]) -> Vec<&str> {
    steps.iter().map(|(step, _)| step.as_str()).collect()
}

#[tokio::test]
async fn an_orders_history_lists_each_step_from_the_rows_of_every_service_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::MySql] {
        // At 50% (a fixed seed), a paid and a declined order come within a few checkouts.
        let t = TestApp::on(backend, |c| c.payment_success_rate = 0.5).await;
        let (ann, bob, admin) = (t.user("ann").await, t.user("bob").await, t.admin().await);
        let product = t.bulk_product().await;
        let mut outcomes = HashMap::new();
        for _ in 0..20 {
            t.add(&ann, product, 2).await.ok(200);
            let order = t.checkout(&ann).await.ok(201).clone();
            outcomes
                .entry(order["status"].as_str().expect("status").to_owned())
                .or_insert(common::id_of(&order));
            if outcomes.len() == 2 {
                break;
            }
        }
        assert_eq!(outcomes.len(), 2, "{backend:?}: 20 checkouts at 50% were all {outcomes:?}");
        let (paid, cancelled) = (outcomes["PAID"], outcomes["CANCELLED"]);

        let steps = history(&t, &ann, paid).await;
        let expected = [
            ("CREATED", "order"),
            ("STOCK_RESERVED", "product"),
            ("PAYMENT_ASKED", "payment"),
            ("PAYMENT_APPROVED", "payment"),
            ("PAID", "order"),
            ("STOCK_COMMITTED", "product"),
            ("CART_CLEARED", "cart"),
        ];
        for (step, service) in expected {
            assert!(
                steps.contains(&(step.to_owned(), service.to_owned())),
                "{backend:?}: no {step} from {service}: {steps:?}"
            );
        }
        let sent = names(&steps).iter().filter(|s| **s == "EVENT_SENT").count();
        assert_eq!(sent, 2, "{backend:?}: ORDER_CREATED and ORDER_COMPLETED sent: {steps:?}");
        assert!(!names(&steps).contains(&"SHIPPED"), "{backend:?}: {steps:?}");

        let steps = history(&t, &ann, cancelled).await;
        for step in
            ["CREATED", "STOCK_RESERVED", "PAYMENT_ASKED", "PAYMENT_DECLINED", "CANCELLED", "STOCK_RELEASED"]
        {
            assert!(names(&steps).contains(&step), "{backend:?}: no {step}: {steps:?}");
        }
        for step in ["PAID", "CART_CLEARED", "STOCK_COMMITTED"] {
            assert!(!names(&steps).contains(&step), "{backend:?}: {step} on a declined order: {steps:?}");
        }

        // Fulfilment appears as the admin does it, and the admin may read any user's history.
        for status in ["SHIPPED", "DELIVERED"] {
            let path = format!("/api/orders/{paid}/status");
            t.call(Service::Order, Method::PUT, &path, Some(&admin), Some(json!({ "status": status })))
                .await
                .ok(200);
        }
        let steps = history(&t, &admin, paid).await;
        assert_eq!(names(&steps)[steps.len() - 2..], ["SHIPPED", "DELIVERED"], "{backend:?}: {steps:?}");

        // Another user's order, or none at all, is not found; no token is 401.
        let path = format!("/api/orders/{paid}/history");
        assert!(
            t.call(Service::Order, Method::GET, &path, Some(&bob), None)
                .await
                .problem(404)
                .contains("not found")
        );
        let none = t.call(Service::Order, Method::GET, "/api/orders/999999/history", Some(&ann), None).await;
        none.problem(404);
        t.call(Service::Order, Method::GET, &path, None, None).await.problem(401);
        // The internal side doors answer only service tokens.
        for service in [Service::Product, Service::Payment, Service::Cart] {
            let side = format!("/internal/history?orderId={paid}&username=ann");
            t.call(service, Method::GET, &side, Some(&ann), None).await.problem(403);
        }
    }
}

/// An OTLP collector on a free port: keeps the body of every `POST /v1/traces`.
async fn collector() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().expect("bodies").push(body.to_vec());
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), bodies)
}

/// `shop run` with `env`; one request to the Product service with `traceparent`; SIGTERM. Answers
/// the request's own `traceparent`.
async fn one_traced_request(env: &[(&str, &str)], traceparent: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let ports: Vec<u16> = (0..5).map(|_| common::free_port()).collect();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shop"));
    cmd.arg("run")
        .env("SHOP_DATA_DIR", dir.path())
        .env("SHOP_HOST", "127.0.0.1")
        .env("SHOP_GATEWAY_PORT", "0");
    for (name, port) in ["AUTH", "PRODUCT", "CART", "PAYMENT", "ORDER"].iter().zip(&ports) {
        cmd.env(format!("SHOP_{name}_PORT"), port.to_string())
            .env_remove(format!("SHOP_{name}_DATABASE_URL"));
    }
    let log = std::fs::File::create(dir.path().join("shop.log")).expect("log");
    cmd.stdout(log.try_clone().expect("log")).stderr(log).env_remove("SHOP_OTLP_ENDPOINT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("shop starts");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/api/products", ports[1]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = loop {
        match client.get(&url).header("traceparent", traceparent).send().await {
            Ok(r) if r.status().is_success() => break r,
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            other => panic!("{url}: {other:?}"),
        }
    };
    let echoed =
        answer.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -TERM");
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    let log = std::fs::read_to_string(dir.path().join("shop.log")).unwrap_or_default();
    assert!(status.success(), "shop run exited {status}:\n{log}");
    echoed
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_in_the_callers_trace_only_when_shop_otlp_endpoint_is_set() {
    let (endpoint, bodies) = collector().await;
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace}-{parent}-01");

    // Unset (the standard OTEL_ variables alone do not turn it on): nothing reaches the collector.
    let echoed = one_traced_request(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)], &traceparent).await;
    assert!(echoed.starts_with(&format!("00-{trace}-")), "{echoed}");
    assert!(bodies.lock().expect("bodies").is_empty(), "spans were exported without SHOP_OTLP_ENDPOINT");

    // Set: the request's span reaches it at shutdown at the latest, with the caller's trace id,
    // the caller's span as its parent and the span id the answer's traceparent named.
    let echoed = one_traced_request(&[("SHOP_OTLP_ENDPOINT", &endpoint)], &traceparent).await;
    let span = echoed.split('-').nth(2).expect("a span id").to_owned();
    assert_ne!(span, parent, "the request is a span of its own");
    let bodies = bodies.lock().expect("bodies");
    let exported = bodies.iter().find(|b| contains(b, &unhex(trace))).unwrap_or_else(|| {
        panic!("no export carries trace {trace} ({} exports)", bodies.len());
    });
    assert!(contains(exported, &unhex(parent)), "the caller's span is not the parent");
    assert!(contains(exported, &unhex(&span)), "the span id the answer named was not exported");
    assert!(contains(exported, b"shop"), "the service name");
}
