//! Crash recovery, end to end: the real `shop` binary (embedded mode, SQLite) aborted at each
//! point of the checkout saga (`SHOP_FAULT`, see `shop_actors::fault`), then started again. Within
//! the recovery threshold every order is PAID or CANCELLED, carts agree with their orders and
//! `shop audit` is clean.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const MOUSE: i64 = 2;
const BUYERS: usize = 8;
const SERVICES: [&str; 5] = ["AUTH", "PRODUCT", "CART", "PAYMENT", "ORDER"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a port")
}

/// One `shop run` process on fixed ports over one data dir, killed when dropped.
struct Shop {
    child: Child,
    ports: Vec<u16>,
    client: reqwest::Client,
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Shop {
    async fn start(dir: &Path, ports: &[u16], fault: Option<&str>) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("shop.log"))
            .expect("a log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shop"));
        cmd.arg("run")
            .env("SHOP_DATA_DIR", dir)
            .env("SHOP_GATEWAY_PORT", "0")
            .env("SHOP_BCRYPT_COST", "4")
            .env("SHOP_PAYMENT_SUCCESS_RATE", "0.5")
            .env("SHOP_PAYMENT_SEED", "5")
            .env("SHOP_PAYMENT_LATENCY_MS", "50")
            .env("SHOP_RECOVERY_THRESHOLD_MS", "1500")
            .env("SHOP_RECOVERY_INTERVAL_MS", "250")
            .env("SHOP_RESERVATION_TTL_SECS", "2")
            .env("SHOP_RESERVATION_SWEEP_MS", "250")
            .env_remove("SHOP_FAULT")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
        for (name, port) in SERVICES.iter().zip(ports) {
            cmd.env(format!("SHOP_{name}_PORT"), port.to_string());
            cmd.env_remove(format!("SHOP_{name}_DATABASE_URL"));
        }
        if let Some(fault) = fault {
            cmd.env("SHOP_FAULT", fault);
        }
        let shop = Self {
            child: cmd.spawn().expect("shop starts"),
            ports: ports.to_vec(),
            client: reqwest::Client::new(),
        };
        for port in ports {
            let url = format!("http://127.0.0.1:{port}/health");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match shop.client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => break,
                    _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => {
                        panic!("{url} never answered: {other:?}; see {}", dir.join("shop.log").display())
                    }
                }
            }
        }
        shop
    }

    fn url(&self, service: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[service])
    }

    async fn call(
        &self,
        service: usize,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(service, path)).timeout(Duration::from_secs(30));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap_or(Value::Null))
            }
            // The process aborted under the request.
            Err(e) => (0, json!(e.to_string())),
        }
    }

    async fn user(&self, name: &str) -> String {
        let body =
            json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"});
        assert_eq!(self.call(0, reqwest::Method::POST, "/api/auth/register", None, Some(body)).await.0, 201);
        let body = json!({"username": name, "password": "password123"});
        let (status, login) = self.call(0, reqwest::Method::POST, "/api/auth/login", None, Some(body)).await;
        assert_eq!(status, 200, "{login}");
        login["token"].as_str().expect("a token").to_owned()
    }

    /// Waits for the process to end by itself; answers whether it was aborted (SIGABRT).
    fn wait_for_abort(&mut self, within: Duration) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.signal() == Some(6);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

fn audit(dir: &Path) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["audit", "--data-dir"])
        .arg(dir)
        .env_remove("SHOP_PRODUCT_DATABASE_URL")
        .env_remove("SHOP_PAYMENT_DATABASE_URL")
        .env_remove("SHOP_ORDER_DATABASE_URL")
        .output()
        .expect("shop audit runs");
    (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// Checkouts running, the process aborted at `point`, started again: within the recovery
/// threshold (and the reservation TTL) everything has ended and agrees.
async fn recovers_from_an_abort(point: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let mut shop = Shop::start(dir.path(), &ports, Some(&format!("{point}:3"))).await;
    let mut tokens = Vec::new();
    for i in 0..BUYERS {
        let token = shop.user(&format!("buyer{i}")).await;
        let add = json!({"productId": MOUSE, "quantity": 1});
        let (status, cart) =
            shop.call(2, reqwest::Method::POST, "/api/cart/add", Some(&token), Some(add)).await;
        assert_eq!(status, 200, "{cart}");
        tokens.push(token);
    }
    let checkouts = tokens.iter().map(|t| shop.call(4, reqwest::Method::POST, "/api/orders", Some(t), None));
    futures::future::join_all(checkouts).await;
    assert!(
        shop.wait_for_abort(Duration::from_secs(30)),
        "the process did not abort at {point}; see {}",
        dir.path().join("shop.log").display()
    );
    drop(shop);

    let shop = Shop::start(dir.path(), &ports, None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let (clean, report) = audit(dir.path());
        // An abandoned reservation is no violation until its TTL has passed: wait for the sweep.
        if clean && report["units"]["reserved"] == json!(0) {
            break report;
        }
        assert!(Instant::now() < deadline, "{point}: not recovered within 30 s: {report}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(report["violations"], json!([]), "{report}");
    assert_eq!(report["orders"], report["payments"], "total orders = total payments: {report}");
    let by_status = |s: &str| report["ordersByStatus"][s].as_i64().unwrap_or(0);
    assert_eq!(by_status("PENDING"), 0, "{report}");

    // Carts agree with their orders: a buyer with a PAID order has an empty cart, every other
    // buyer still has the mouse.
    let mut paid = 0;
    for token in &tokens {
        let (_, orders) = shop.call(4, reqwest::Method::GET, "/api/orders", Some(token), None).await;
        let bought = orders.as_array().is_some_and(|all| all.iter().any(|o| o["status"] == "PAID"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, cart) = shop.call(2, reqwest::Method::GET, "/api/cart", Some(token), None).await;
            let items = cart["items"].as_array().map_or(0, Vec::len);
            if items == usize::from(!bought) {
                break;
            }
            assert!(Instant::now() < deadline, "{point}: cart {cart} disagrees with orders {orders}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        paid += usize::from(bought);
    }
    assert_eq!(report["units"]["sold"].as_i64(), Some(i64::try_from(paid).unwrap_or(0)), "{report}");
    assert_eq!(report["units"]["reserved"].as_i64(), Some(0), "every reservation has ended: {report}");
}

macro_rules! fault_points {
    ($($name:ident => $point:literal),* $(,)?) => {
        $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
           async fn $name() { recovers_from_an_abort($point).await } )*

        #[test]
        fn every_fault_point_is_tested() {
            let tested = [$($point),*];
            assert_eq!(tested, shop_actors::fault::POINTS);
        }
    };
}

fault_points!(
    an_abort_after_the_reservation => "after-reservation",
    an_abort_after_the_order_is_stored => "after-order",
    an_abort_after_the_payment_is_stored_pending => "after-payment-pending",
    an_abort_after_the_gateway_answered => "after-gateway",
    an_abort_after_the_payment_is_updated => "after-payment",
    an_abort_after_the_order_is_updated => "after-order-update",
    an_abort_after_the_event_before_the_cart => "after-event",
);
