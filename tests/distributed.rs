//! Distributed mode end to end: five real `shop serve` processes on MariaDB, talking REST to each
//! other and Kafka (the broker `scripts/test` starts; `SHOP_TEST_KAFKA_BROKERS`) for events.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shop_services::db::Service;

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

/// Five processes; killed when dropped.
struct Cluster {
    children: Vec<(Service, Child)>,
    ports: Vec<(Service, u16)>,
    client: reqwest::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    async fn start(success_rate: &str) -> Self {
        let brokers = brokers();
        let dir = std::env::temp_dir().join(format!("shop-dist-{}", uuid::Uuid::new_v4().simple()));
        let ports: Vec<(Service, u16)> = Service::ALL.iter().map(|s| (*s, free_port())).collect();
        let port = |s: Service| ports.iter().find(|(x, _)| *x == s).map(|(_, p)| *p).unwrap_or_default();
        let group = format!("cart-{}", uuid::Uuid::new_v4().simple());
        let mut children = Vec::new();
        for service in Service::ALL {
            let url = shop_services::testing::fresh_mysql_url(service);
            shop_services::testing::open_or_explain(service, &url).await.close().await;
            let name = service.name();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_shop"));
            cmd.args(["serve", name])
                .env("SHOP_DATA_DIR", &dir)
                .env("SHOP_JWT_SECRET", SECRET)
                .env("SHOP_BCRYPT_COST", "4")
                .env("SHOP_ADMIN_PASSWORD", "dist-admin-1")
                .env("SHOP_PAYMENT_SUCCESS_RATE", success_rate)
                .env("SHOP_KAFKA_BROKERS", &brokers)
                .env("SHOP_KAFKA_GROUP", &group)
                .env(format!("SHOP_{}_DATABASE_URL", name.to_uppercase()), &url)
                .env(format!("SHOP_{}_PORT", name.to_uppercase()), port(service).to_string())
                .env("SHOP_PRODUCT_URL", format!("http://127.0.0.1:{}", port(Service::Product)))
                .env("SHOP_CART_URL", format!("http://127.0.0.1:{}", port(Service::Cart)))
                .env("SHOP_PAYMENT_URL", format!("http://127.0.0.1:{}", port(Service::Payment)))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            children.push((service, cmd.spawn().expect("shop serve starts")));
        }
        let cluster = Self { children, ports, client: reqwest::Client::new() };
        for service in Service::ALL {
            let url = cluster.url(service, "/health");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match cluster.client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => break,
                    _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                    other => panic!("{} never became healthy: {other:?}", service.name()),
                }
            }
        }
        cluster
    }

    fn url(&self, service: Service, path: &str) -> String {
        let port = self.ports.iter().find(|(s, _)| *s == service).map(|(_, p)| *p).unwrap_or_default();
        format!("http://127.0.0.1:{port}{path}")
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

    async fn cart(&self, token: &str) -> Value {
        let (status, cart) =
            self.call(Service::Cart, reqwest::Method::GET, "/api/cart", Some(token), None).await;
        assert_eq!(status, 200, "{cart}");
        cart
    }
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
            tokio::time::sleep(Duration::from_millis(500)).await;
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
