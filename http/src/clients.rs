//! HTTP clients behind the ports the saga and the Cart service already use, for distributed mode:
//! Order → Cart (`CartPort`), Order → Payment (`PaymentGateway`), Order → Product (`StockPort`),
//! Cart → Product (`Catalog`), and Order → Product / Payment / Cart for an order's history
//! (`HistorySource`).
//!
//! Every call carries a SERVICE token signed with the shared secret, has a connect and a request
//! timeout, and waits for one of a bounded number of in-flight slots per peer (a slow peer makes
//! callers fail fast instead of piling up requests). Only idempotent calls are retried, with
//! back-off: a charge (idempotent per order), a cart release, a product lookup. Beginning a
//! checkout is not retried; a hold left by a lost answer lapses after its TTL.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use shop_actors::model::{LineQuantity, PaymentReceipt};
use shop_actors::ports::{
    CartPort, CartPortError, ChargeRequest, CheckoutLease, CompletedCheckout, GatewayError, PaymentGateway,
    StockError, StockPort, VoidRequest,
};
use shop_actors::retry::{Backoff, Retry};
use shop_services::Service;
use shop_services::auth::JwtKeys;
use shop_services::cart::Catalog;
use shop_services::history::{HistorySource, HistoryStep, OrderRef};
use shop_services::payment::Payment;
use shop_services::product::Product;
use shop_services::{ServiceError, ServiceResult};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::lease::{self, BeginBody, LeaseBody};
use crate::stock;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Requests in flight to one peer; more wait up to `request_timeout`, then fail.
    pub max_in_flight: usize,
    /// Attempts of an idempotent call.
    pub attempts: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_in_flight: 64,
            attempts: 3,
        }
    }
}

/// A failed call: either the peer answered (with this status and body) or it could not be asked.
#[derive(Debug)]
enum CallError {
    Status(StatusCode, String),
    Transport(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(s, body) => write!(f, "answered {s}: {body}"),
            CallError::Transport(e) => write!(f, "{e}"),
        }
    }
}

/// One peer service (`callee`), called by `caller` with a SERVICE token made for each call.
#[derive(Clone)]
pub struct ServiceClient {
    http: reqwest::Client,
    base: Arc<str>,
    caller: Service,
    callee: Service,
    keys: JwtKeys,
    slots: Arc<Semaphore>,
    config: ClientConfig,
}

impl ServiceClient {
    pub fn new(
        base: &str,
        caller: Service,
        callee: Service,
        keys: JwtKeys,
        config: ClientConfig,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').into(),
            caller,
            callee,
            keys,
            slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, CallError> {
        let _slot = tokio::time::timeout(self.config.request_timeout, self.slots.acquire())
            .await
            .map_err(|_| CallError::Transport(format!("{}{path}: too many requests in flight", self.base)))?
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let token = self
            .keys
            .issue_service(self.caller, self.callee)
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        // The caller's trace goes on: the saga runs under the span of the checkout's request.
        if let Some(traceparent) = shop_actors::trace::outgoing() {
            req = req.header("traceparent", traceparent);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| CallError::Transport(format!("{}{path}: {e}", self.base)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| CallError::Transport(e.to_string()))?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(CallError::Status(status, String::from_utf8_lossy(&bytes).into_owned()))
        }
    }

    /// `call`, repeated with back-off (100, 200 … ms) while the peer cannot be reached or
    /// answers 502, 503 or 504.
    async fn call_idempotent(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, CallError> {
        let retry =
            Retry { attempts: self.config.attempts, backoff: Backoff::Linear(Duration::from_millis(100)) };
        let retryable = |e: &CallError| match e {
            CallError::Transport(_) => true,
            CallError::Status(status, _) => matches!(
                *status,
                StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
            ),
        };
        retry.run(path, retryable, || self.call(method.clone(), path, body)).await
    }
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("unexpected answer: {e}"))
}

/// Order → Payment.
pub struct HttpPaymentGateway(pub ServiceClient);

#[async_trait]
impl PaymentGateway for HttpPaymentGateway {
    async fn charge(&self, r: ChargeRequest) -> Result<PaymentReceipt, GatewayError> {
        let body = json!({ "orderId": r.order_id, "userId": r.username, "amount": r.amount });
        let bytes = self
            .0
            .call_idempotent(Method::POST, "/api/payments/process", Some(&body))
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        let payment: Payment = parse(&bytes).map_err(GatewayError::Unavailable)?;
        Ok(payment.receipt())
    }

    async fn void(&self, r: VoidRequest) -> Result<PaymentReceipt, GatewayError> {
        let body =
            json!({ "orderId": r.order_id, "userId": r.username, "amount": r.amount, "reason": r.reason });
        let bytes = self
            .0
            .call_idempotent(Method::POST, crate::routes::payment::VOID_ROUTE, Some(&body))
            .await
            .map_err(|e| GatewayError::Unavailable(e.to_string()))?;
        let payment: Payment = parse(&bytes).map_err(GatewayError::Unavailable)?;
        Ok(payment.receipt())
    }

    async fn find(&self, order_id: i64) -> Result<Option<PaymentReceipt>, GatewayError> {
        match self.0.call_idempotent(Method::GET, &format!("/api/payments/order/{order_id}"), None).await {
            Ok(bytes) => Ok(Some(parse::<Payment>(&bytes).map_err(GatewayError::Unavailable)?.receipt())),
            Err(CallError::Status(StatusCode::NOT_FOUND, _)) => Ok(None),
            Err(e) => Err(GatewayError::Unavailable(e.to_string())),
        }
    }
}

/// Order → Product, for stock.
pub struct HttpStockPort(pub ServiceClient);

#[async_trait]
impl StockPort for HttpStockPort {
    async fn reserve(&self, checkout_id: Uuid, lines: &[LineQuantity]) -> Result<(), StockError> {
        let body = serde_json::to_value(stock::ReserveBody { lines: lines.to_vec() })
            .map_err(|e| StockError::Unavailable(e.to_string()))?;
        match self.0.call_idempotent(Method::PUT, &stock::reservation_path(checkout_id), Some(&body)).await {
            Ok(_) => Ok(()),
            Err(CallError::Status(status, body)) => Err(stock::refusal(status, &body, lines)),
            Err(e) => Err(StockError::Unavailable(e.to_string())),
        }
    }

    async fn commit(&self, checkout_id: Uuid) -> Result<(), StockError> {
        match self.0.call_idempotent(Method::POST, &stock::commit_path(checkout_id), None).await {
            Ok(_) => Ok(()),
            Err(CallError::Status(status, body)) => Err(stock::refusal(status, &body, &[])),
            Err(e) => Err(StockError::Unavailable(e.to_string())),
        }
    }

    async fn release(&self, checkout_id: Uuid) -> Result<(), StockError> {
        self.0
            .call_idempotent(Method::DELETE, &stock::reservation_path(checkout_id), None)
            .await
            .map(|_| ())
            .map_err(|e| StockError::Unavailable(e.to_string()))
    }
}

/// Order → Cart.
pub struct HttpCartPort(pub ServiceClient);

#[async_trait]
impl CartPort for HttpCartPort {
    async fn begin_checkout(
        &self,
        username: &str,
        completed: Option<CompletedCheckout>,
    ) -> Result<CheckoutLease, CartPortError> {
        // No body when there is nothing to say (the usual case: the event came first).
        let body = completed
            .map(|c| serde_json::to_value(BeginBody { completed: Some(c) }))
            .transpose()
            .map_err(|e| CartPortError::Unavailable(e.to_string()))?;
        match self.0.call(Method::POST, &lease::begin_path(username), body.as_ref()).await {
            Ok(bytes) => Ok(parse::<LeaseBody>(&bytes).map_err(CartPortError::Unavailable)?.into()),
            Err(CallError::Status(status, detail)) => Err(lease::refusal(status, detail)),
            Err(e) => Err(CartPortError::Unavailable(e.to_string())),
        }
    }

    async fn release_checkout(&self, username: &str, checkout_id: Uuid) -> Result<(), CartPortError> {
        self.0
            .call_idempotent(Method::DELETE, &lease::release_path(username, checkout_id), None)
            .await
            .map(|_| ())
            .map_err(|e| CartPortError::Unavailable(e.to_string()))
    }
}

/// Order → Product, Payment or Cart: that service's steps of an order's history.
pub struct HttpHistory {
    pub client: ServiceClient,
    /// The service, as the history names it.
    pub name: &'static str,
}

#[async_trait]
impl HistorySource for HttpHistory {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn steps(&self, order: &OrderRef) -> ServiceResult<Vec<HistoryStep>> {
        let busy = |e: String| ServiceError::Busy(format!("{} service: {e}", self.name));
        let query = serde_urlencoded::to_string(order).map_err(|e| busy(e.to_string()))?;
        let path = format!("{}?{query}", crate::history::HISTORY_ROUTE);
        let bytes =
            self.client.call_idempotent(Method::GET, &path, None).await.map_err(|e| busy(e.to_string()))?;
        parse(&bytes).map_err(busy)
    }
}

/// Cart → Product.
pub struct HttpCatalog(pub ServiceClient);

#[async_trait]
impl Catalog for HttpCatalog {
    async fn product(&self, id: i64) -> ServiceResult<Product> {
        match self.0.call_idempotent(Method::GET, &format!("/api/products/{id}"), None).await {
            Ok(bytes) => parse(&bytes).map_err(ServiceError::Internal),
            Err(CallError::Status(StatusCode::NOT_FOUND, _)) => {
                Err(ServiceError::NotFound(format!("product {id} not found")))
            }
            Err(e) => Err(ServiceError::Busy(format!("product service: {e}"))),
        }
    }
}
