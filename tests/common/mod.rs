//! The one harness every end-to-end test builds the system with: the real `Application`, all five
//! services on port 0, a fresh data dir, and a client that speaks the REST contract.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shop_actors::bus::EventLog;
use shop_actors::model::{OrderEvent, OrderEventType};
use shop_http::{Application, RunConfig};
use shop_services::Service;
use shop_services::auth::{JwtKeys, Secret};
use shop_services::testing::MySqlDatabases;
use tempfile::TempDir;

pub const JWT_SECRET: &str = "end-to-end-test-secret-that-is-long-enough";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "password123";

/// Where the five services keep their data in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in the test's data dir (embedded mode's default).
    Sqlite,
    /// A fresh MySQL database per service on the test server (`SHOP_TEST_MYSQL_URL`).
    MySql,
}

pub struct TestApp {
    pub app: Application,
    pub dir: TempDir,
    pub config: RunConfig,
    pub client: reqwest::Client,
    pub events: Arc<EventLog>,
    /// The MySQL databases of a test on that backend, dropped after the app (declared last).
    mysql: MySqlDatabases,
}

/// What a response carried: status, content type and body as JSON (Null when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

impl Reply {
    /// Asserts an RFC 9457 problem with this status and returns its detail.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        assert_eq!(self.body["status"], json!(status), "{self:?}");
        let detail = self.body["detail"].as_str().unwrap_or_default().to_owned();
        assert!(!detail.is_empty(), "a problem needs a useful detail: {self:?}");
        detail
    }

    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected answer: {self:?}");
        &self.body
    }
}

pub fn test_config(dir: &TempDir) -> RunConfig {
    let mut config = RunConfig::defaults();
    config.storage.data_dir = dir.path().to_path_buf();
    for service in Service::ALL {
        config.set_port(service, 0);
    }
    config.gateway_port = 0;
    config.jwt_secret = Some(Secret::new(JWT_SECRET));
    config.admin_password = Some(Secret::new(ADMIN_PASSWORD));
    config.bcrypt_cost = 4;
    config.hash_concurrency = 2;
    // The tests register many users from 127.0.0.1; the limit itself is tested on its own.
    config.register_per_address = 0;
    config.payment_seed = Some(7);
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut RunConfig)) -> Self {
        Self::on(Backend::Sqlite, adjust).await
    }

    /// The system with all five services on `backend`.
    pub async fn on(backend: Backend, adjust: impl FnOnce(&mut RunConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(&dir);
        let mut mysql = MySqlDatabases::default();
        if backend == Backend::MySql {
            for service in Service::ALL {
                config.storage.set_database_url(service, mysql.create(service).await);
            }
        }
        adjust(&mut config);
        Self::start(dir, config, mysql).await
    }

    async fn start(dir: TempDir, config: RunConfig, mysql: MySqlDatabases) -> Self {
        let app = Application::build(config.clone()).await.expect("the application starts");
        let events = Arc::new(EventLog::default());
        app.bus().subscribe(events.clone());
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        Self { app, dir, config, client, events, mysql }
    }

    /// Stops the system and starts it again on the same data dir and databases (ports are new).
    pub async fn restart(self) -> Self {
        let Self { app, dir, config, mysql, .. } = self;
        app.stop().await;
        Self::start(dir, config, mysql).await
    }

    pub fn url(&self, service: Service, path: &str) -> String {
        format!("http://{}{path}", self.app.addr(service))
    }

    pub async fn call(
        &self,
        service: Service,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(service, path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::reply(req.send().await.expect("request sent")).await
    }

    pub async fn raw(
        &self,
        service: Service,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut req =
            self.client.request(method, self.url(service, path)).header("content-type", "application/json");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Self::reply(req.body(body.to_owned()).send().await.expect("request sent")).await
    }

    pub async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let content_type =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply { status, content_type, body }
    }

    pub async fn register(&self, username: &str) -> Reply {
        let body =
            json!({ "username": username, "email": format!("{username}@example.com"), "password": PASSWORD });
        self.call(Service::Auth, Method::POST, "/api/auth/register", None, Some(body)).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        let body = json!({ "username": username, "password": password });
        self.call(Service::Auth, Method::POST, "/api/auth/login", None, Some(body)).await
    }

    /// Registers `username` and returns a token for it.
    pub async fn user(&self, username: &str) -> String {
        self.register(username).await.ok(201);
        self.token(username, PASSWORD).await
    }

    pub async fn token(&self, username: &str, password: &str) -> String {
        let reply = self.login(username, password).await;
        reply.ok(200)["token"].as_str().expect("a token").to_owned()
    }

    pub async fn admin(&self) -> String {
        self.token("admin", ADMIN_PASSWORD).await
    }

    /// A product with stock enough for any test (checkouts take stock).
    /// A token `caller` would send to `callee`, as the services make them for each other.
    pub fn service_token(&self, caller: Service, callee: Service) -> String {
        let keys = JwtKeys::new(&Secret::new(JWT_SECRET), Duration::from_secs(60)).expect("keys");
        keys.issue_service(caller, callee).expect("a service token")
    }

    pub async fn bulk_product(&self) -> i64 {
        let admin = self.admin().await;
        let body = json!({ "name": "Bulk cable", "price": "2.50", "stock": 1_000_000 });
        let reply =
            self.call(Service::Product, Method::POST, "/api/products", Some(&admin), Some(body)).await;
        id_of(reply.ok(201))
    }

    pub async fn add(&self, token: &str, product_id: i64, quantity: i64) -> Reply {
        let body = json!({ "productId": product_id, "quantity": quantity });
        self.call(Service::Cart, Method::POST, "/api/cart/add", Some(token), Some(body)).await
    }

    pub async fn cart(&self, token: &str) -> Value {
        self.call(Service::Cart, Method::GET, "/api/cart", Some(token), None).await.ok(200).clone()
    }

    pub async fn checkout(&self, token: &str) -> Reply {
        self.call(Service::Order, Method::POST, "/api/orders", Some(token), None).await
    }

    /// `POST /api/orders` with an `Idempotency-Key`.
    pub async fn checkout_with_key(&self, token: &str, key: &str) -> Reply {
        let resp = self
            .client
            .post(self.url(Service::Order, "/api/orders"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .send()
            .await
            .expect("request sent");
        Self::reply(resp).await
    }

    pub async fn products(&self) -> Value {
        self.call(Service::Product, Method::GET, "/api/products", None, None).await.ok(200).clone()
    }

    pub fn events_of(&self, order_id: i64) -> Vec<OrderEvent> {
        self.events.events().into_iter().filter(|e| e.order_id == order_id).collect()
    }

    pub fn outcome_events(&self, order_id: i64) -> Vec<OrderEventType> {
        self.events_of(order_id)
            .into_iter()
            .map(|e| e.event_type)
            .filter(|t| *t != OrderEventType::OrderCreated)
            .collect()
    }
}

/// Quantity of `product_id` in a cart reply.
pub fn quantity_of(cart: &Value, product_id: i64) -> i64 {
    cart["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["productId"] == json!(product_id))
        .and_then(|i| i["quantity"].as_i64())
        .unwrap_or(0)
}

pub fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("an id")
}

/// A port free on 127.0.0.1 now (the OS picks it; nothing holds it afterwards).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
