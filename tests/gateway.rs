//! The API gateway: in embedded mode (in-process, in front of the real `Application`) and as
//! `shop serve gateway` (over HTTP, in front of the same services), over real HTTP.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{PASSWORD, Reply, TestApp, free_port};
use reqwest::Method;
use serde_json::{Value, json};
use shop_services::Service;

async fn through(t: &TestApp, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
    send(&t.client, &format!("http://{}", t.app.gateway_addr()), method, path, token, body).await
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    TestApp::reply(req.send().await.expect("sent")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_routes_the_four_public_services_and_nothing_else() {
    let t = TestApp::spawn_with(|c| c.payment_success_rate = 1.0).await;
    // The seed's success flow, entirely through port 8000's gateway.
    let register = json!({"username": "gwen", "email": "gwen@example.com", "password": PASSWORD});
    through(&t, Method::POST, "/api/auth/register", None, Some(register)).await.ok(201);
    let login = json!({"username": "gwen", "password": PASSWORD});
    let token = through(&t, Method::POST, "/api/auth/login", None, Some(login)).await.ok(200)["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let products = through(&t, Method::GET, "/api/products", None, None).await.ok(200).clone();
    let direct = t.call(Service::Product, Method::GET, "/api/products", None, None).await.ok(200).clone();
    assert_eq!(products, direct, "the same answer through the gateway as from the service");
    let id = products[0]["id"].as_i64().expect("a product");
    let add = json!({"productId": id, "quantity": 2});
    through(&t, Method::POST, "/api/cart/add", Some(&token), Some(add)).await.ok(200);
    let order = through(&t, Method::POST, "/api/orders", Some(&token), None).await.ok(201).clone();
    assert_eq!(order["status"], "PAID", "{order}");
    let path = format!("/api/orders/{}", order["id"]);
    assert_eq!(through(&t, Method::GET, &path, Some(&token), None).await.ok(200)["id"], order["id"]);
    assert_eq!(through(&t, Method::GET, "/api/cart", Some(&token), None).await.ok(200)["items"], json!([]));

    // Payment, the side doors and the services' own operational endpoints are not exposed.
    let order_service = t.service_token(Service::Order, Service::Payment);
    for (method, path) in [
        (Method::GET, format!("/api/payments/order/{}", order["id"])),
        (Method::POST, "/api/payments/process".to_owned()),
        (Method::POST, "/internal/carts/gwen/checkout".to_owned()),
        (Method::GET, "/internal/history?orderId=1&username=gwen".to_owned()),
        (Method::GET, "/metrics".to_owned()),
        (Method::GET, "/api/cartx".to_owned()),
    ] {
        let reply = through(&t, method.clone(), &path, Some(&order_service), None).await;
        let detail = reply.problem(404);
        assert!(detail.contains("no route"), "{method} {path}: {detail}");
    }
    // The storefront is there, with its own script and style, from no other host.
    let page = t.client.get(format!("http://{}/", t.app.gateway_addr())).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("/static/shop.js") && !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for asset in ["/static/shop.js", "/static/shop.css"] {
        let resp =
            t.client.get(format!("http://{}{asset}", t.app.gateway_addr())).send().await.expect("sent");
        assert_eq!(resp.status(), 200, "{asset}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_pass_through_and_every_answer_has_a_request_id() {
    let t = TestApp::spawn_with(|c| c.payment_success_rate = 1.0).await;
    let token = t.user("hal").await;
    let product = t.bulk_product().await;
    t.add(&token, product, 1).await.ok(200);
    let gateway = format!("http://{}", t.app.gateway_addr());
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let checkout = |key: &'static str| {
        t.client
            .post(format!("{gateway}/api/orders"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .header("x-request-id", "my-request-1")
            .send()
    };
    let first = checkout("gw-key-1").await.expect("sent");
    assert_eq!(first.headers()["x-request-id"], "my-request-1", "a sensible request id is kept");
    let first = TestApp::reply(first).await.ok(201).clone();
    // The same Idempotency-Key through the gateway: the same order, not a second one.
    let again = TestApp::reply(checkout("gw-key-1").await.expect("sent")).await.ok(201).clone();
    assert_eq!(again["id"], first["id"]);
    // A request without an id gets one, errors included.
    let resp =
        t.client.get(format!("{gateway}/api/orders/999999")).bearer_auth(&token).send().await.expect("sent");
    let id = resp.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(id.len(), 36, "{id}");
    TestApp::reply(resp).await.problem(404);
    // Bodies stream through whole; the service's own limit still answers past 64 KiB.
    let long = "x".repeat(1_900);
    let body = json!({"name": "Streamed", "description": long, "price": "1.00", "stock": 1});
    let admin = t.admin().await;
    let made = through(&t, Method::POST, "/api/products", Some(&admin), Some(body)).await.ok(201).clone();
    assert_eq!(made["description"].as_str().map(str::len), Some(1_900));
    let huge = json!({"name": "Huge", "description": "y".repeat(70 * 1024), "price": "1.00", "stock": 1});
    through(&t, Method::POST, "/api/products", Some(&admin), Some(huge)).await.problem(413);
}

/// The login limits count the client's address, not the gateway's: attempts from one address
/// through the gateway do not lock out a person at another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_embedded_gateway_each_client_keeps_its_own_address() {
    let t = TestApp::spawn_with(|c| {
        c.login_address_failures = 3;
        c.login_account_failures = 100;
    })
    .await;
    t.register("ivy").await.ok(201);
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::from(ip))).build().expect("client")
    };
    let base = format!("http://{}", t.app.gateway_addr());
    let (attacker, owner) = (from([127, 0, 0, 3]), from([127, 0, 0, 4]));
    for _ in 0..3 {
        let bad = json!({"username": "ivy", "password": "wrong-password"});
        send(&attacker, &base, Method::POST, "/api/auth/login", None, Some(bad)).await.problem(401);
    }
    let bad = json!({"username": "ivy", "password": "wrong-password"});
    send(&attacker, &base, Method::POST, "/api/auth/login", None, Some(bad)).await.problem(429);
    let good = json!({"username": "ivy", "password": PASSWORD});
    send(&owner, &base, Method::POST, "/api/auth/login", None, Some(good)).await.ok(200);
}

/// `shop serve gateway`, killed when dropped.
struct GatewayProcess {
    child: Child,
    base: String,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve_gateway(urls: [(&str, String); 4], timeout_ms: u64) -> GatewayProcess {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shop"));
    cmd.args(["serve", "gateway"])
        .env("SHOP_GATEWAY_PORT", port.to_string())
        .env("SHOP_GATEWAY_TIMEOUT_MS", timeout_ms.to_string())
        .env("SHOP_JWT_SECRET", common::JWT_SECRET)
        .env_remove("SHOP_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (var, url) in urls {
        cmd.env(var, url);
    }
    let gateway = GatewayProcess {
        child: cmd.spawn().expect("shop serve gateway starts"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{}/health", gateway.base)).send().await.is_ok() {
            return gateway;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("shop serve gateway did not answer on {}", gateway.base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_gateway_forwards_over_http_and_answers_502_and_504_for_services_down_or_slow() {
    let t = TestApp::spawn_with(|c| c.payment_success_rate = 1.0).await;
    let url = |s: Service| format!("http://{}", t.app.addr(s));
    // Cart's URL leads nowhere; Order's to a listener that accepts and never answers.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let gateway = serve_gateway(
        [
            ("SHOP_AUTH_URL", url(Service::Auth)),
            ("SHOP_PRODUCT_URL", url(Service::Product)),
            ("SHOP_CART_URL", dead),
            ("SHOP_ORDER_URL", silent_url),
        ],
        500,
    )
    .await;
    t.register("joe").await.ok(201);
    let login = json!({"username": "joe", "password": PASSWORD});
    let reply = send(&t.client, &gateway.base, Method::POST, "/api/auth/login", None, Some(login)).await;
    let token = reply.ok(200)["token"].as_str().expect("token").to_owned();
    let products = send(&t.client, &gateway.base, Method::GET, "/api/products", None, None).await;
    assert!(products.ok(200).as_array().is_some_and(|p| !p.is_empty()));
    let down =
        send(&t.client, &gateway.base, Method::GET, "/api/cart", Some(&token), None).await.problem(502);
    assert!(down.contains("cart service cannot be reached"), "{down}");
    let slow =
        send(&t.client, &gateway.base, Method::GET, "/api/orders", Some(&token), None).await.problem(504);
    assert!(slow.contains("order service did not answer within 500 ms"), "{slow}");
    send(&t.client, &gateway.base, Method::GET, "/api/payments/order/1", Some(&token), None)
        .await
        .problem(404);
    hold.abort();
}

/// Distributed mode: the services believe the gateway's `X-Forwarded-For` when told to trust it
/// (`SHOP_TRUSTED_PROXIES`), so one attacker behind the gateway does not lock everyone out; a
/// client's own `X-Forwarded-For`, sent directly, is not believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_count_the_client_behind_a_trusted_gateway_and_never_a_claimed_address() {
    let t = TestApp::spawn_with(|c| {
        c.login_address_failures = 3;
        c.login_account_failures = 100;
        c.trusted_proxies = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    })
    .await;
    t.register("kim").await.ok(201);
    let url = |s: Service| format!("http://{}", t.app.addr(s));
    let gateway = serve_gateway(
        [
            ("SHOP_AUTH_URL", url(Service::Auth)),
            ("SHOP_PRODUCT_URL", url(Service::Product)),
            ("SHOP_CART_URL", url(Service::Cart)),
            ("SHOP_ORDER_URL", url(Service::Order)),
        ],
        5_000,
    )
    .await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::from(ip))).build().expect("client")
    };
    let bad = || Some(json!({"username": "kim", "password": "wrong-password"}));
    let attacker = from([127, 0, 0, 3]);
    for _ in 0..3 {
        send(&attacker, &gateway.base, Method::POST, "/api/auth/login", None, bad()).await.problem(401);
    }
    send(&attacker, &gateway.base, Method::POST, "/api/auth/login", None, bad()).await.problem(429);
    // Another person behind the same gateway is not held.
    let good = || Some(json!({"username": "kim", "password": PASSWORD}));
    send(&from([127, 0, 0, 4]), &gateway.base, Method::POST, "/api/auth/login", None, good()).await.ok(200);
    // Straight to Auth from an untrusted address, claiming to be someone else: counted as itself.
    let direct = url(Service::Auth);
    let liar = from([127, 0, 0, 5]);
    for _ in 0..3 {
        let resp = liar
            .post(format!("{direct}/api/auth/login"))
            .header("x-forwarded-for", "127.0.0.6")
            .json(&bad())
            .send()
            .await
            .expect("sent");
        TestApp::reply(resp).await.problem(401);
    }
    send(&liar, &direct, Method::POST, "/api/auth/login", None, bad()).await.problem(429);
    send(&from([127, 0, 0, 6]), &direct, Method::POST, "/api/auth/login", None, good()).await.ok(200);
}

/// An upstream that answers every request with the request's head, as it arrived.
async fn echo_upstream() -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    head.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.write_all(&head).await;
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_gateway_passes_the_end_to_end_headers_and_names_the_client() {
    let (echo, task) = echo_upstream().await;
    let gateway = serve_gateway(
        [
            ("SHOP_AUTH_URL", echo.clone()),
            ("SHOP_PRODUCT_URL", echo.clone()),
            ("SHOP_CART_URL", echo.clone()),
            ("SHOP_ORDER_URL", echo),
        ],
        5_000,
    )
    .await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = reqwest::Client::new()
        .post(format!("{}/api/orders?page=2", gateway.base))
        .bearer_auth("a.b.c")
        .header("idempotency-key", "key-42")
        .header("traceparent", traceparent)
        .header("x-forwarded-for", "10.9.9.9")
        .header("connection", "keep-alive, x-secret-hop")
        .header("x-secret-hop", "for the gateway only")
        .send()
        .await
        .expect("sent");
    let id = resp.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let head = resp.text().await.expect("text").to_lowercase();
    assert!(head.starts_with("post /api/orders?page=2 http/1.1\r\n"), "{head}");
    for expected in [
        "authorization: bearer a.b.c".to_owned(),
        "idempotency-key: key-42".to_owned(),
        format!("traceparent: {traceparent}"),
        format!("x-request-id: {id}"),
        // The gateway says who called, and drops what the client claimed about itself.
        "x-forwarded-for: 127.0.0.1".to_owned(),
    ] {
        assert!(head.contains(&expected), "{expected} missing from:\n{head}");
    }
    assert!(!head.contains("10.9.9.9") && !head.contains("for the gateway only"), "{head}");
    task.abort();
}

#[test]
fn serve_gateway_refuses_to_start_without_the_services_urls() {
    let out = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "gateway"])
        .env("SHOP_GATEWAY_PORT", "0")
        .env("SHOP_JWT_SECRET", common::JWT_SECRET)
        .env_remove("SHOP_CART_URL")
        .env("SHOP_AUTH_URL", "http://127.0.0.1:1")
        .env("SHOP_PRODUCT_URL", "http://127.0.0.1:1")
        .env("SHOP_ORDER_URL", "http://127.0.0.1:1")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SHOP_CART_URL"), "{stderr}");
}
