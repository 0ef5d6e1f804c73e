//! Storage, one repository per service, implemented once per backend: [`sqlite`] for embedded
//! mode and [`mysql`] for production. The services hold `Arc<dyn …Store>` and never see which.
//!
//! The cart and order stores implement the actor core's ports
//! ([`shop_actors::ports::CartStore`], [`shop_actors::ports::OrderStore`]) directly.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shop_actors::model::PaymentStatus;
use shop_actors::ports::OrderStore;

use crate::auth::{Role, User};
use crate::error::ServiceResult;
use crate::payment::Payment;
use crate::product::{Product, ProductInput};

pub mod mysql;
pub mod sqlite;

/// A user row about to be inserted.
#[derive(Debug, Clone)]
pub struct NewUserRow<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// `ServiceError::Conflict` when the username or email is taken.
    async fn insert(&self, user: NewUserRow<'_>) -> ServiceResult<User>;
    /// The password hash and role of `username`.
    async fn credentials(&self, username: &str) -> ServiceResult<Option<(String, Role)>>;
    async fn find(&self, username: &str) -> ServiceResult<Option<User>>;
    /// Sets the user's password hash and makes it ADMIN; false when there is no such user.
    async fn make_admin(&self, username: &str, password_hash: &str) -> ServiceResult<bool>;
}

#[async_trait]
pub trait ProductStore: Send + Sync + 'static {
    async fn list(&self) -> ServiceResult<Vec<Product>>;
    async fn get(&self, id: i64) -> ServiceResult<Option<Product>>;
    async fn create(&self, product: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Product>;
    async fn update(
        &self,
        id: i64,
        product: &ProductInput,
        now: DateTime<Utc>,
    ) -> ServiceResult<Option<Product>>;
    async fn delete(&self, id: i64) -> ServiceResult<bool>;
    /// Inserts `products` if the catalog is empty, in one transaction; returns how many.
    async fn seed_if_empty(&self, products: &[ProductInput], now: DateTime<Utc>) -> ServiceResult<usize>;
    /// Ids of products whose stock is below zero (there must be none).
    async fn negative_stock(&self) -> ServiceResult<Vec<i64>>;
}

/// A payment row about to be inserted.
#[derive(Debug, Clone)]
pub struct NewPayment<'a> {
    pub order_id: i64,
    pub user_id: &'a str,
    pub amount: Decimal,
    pub status: PaymentStatus,
    pub transaction_id: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

/// What the audit needs of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSummary {
    pub id: i64,
    pub order_id: i64,
    pub status: PaymentStatus,
    pub amount: Decimal,
}

#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    async fn find_by_order(&self, order_id: i64) -> ServiceResult<Option<Payment>>;
    /// Records the payment; `None` when the order already has one (that one stands).
    async fn insert(&self, payment: NewPayment<'_>) -> ServiceResult<Option<Payment>>;
    async fn summaries(&self) -> ServiceResult<Vec<PaymentSummary>>;
}

/// What the audit needs of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub id: i64,
    pub status: String,
    pub payment_id: Option<i64>,
    pub total_amount: Decimal,
}

/// The order database: the actor core's [`OrderStore`] plus what the audit reads.
#[async_trait]
pub trait OrderRepo: OrderStore {
    async fn summaries(&self) -> ServiceResult<Vec<OrderSummary>>;
}

/// A bind value of the order queries, whose filters differ only in their parameters.
pub(super) enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

/// A cart write refused because the stored cart is no longer at the version it was based on.
pub(super) fn stale_cart(cart: &shop_actors::model::Cart) -> shop_actors::ports::StoreError {
    shop_actors::ports::StoreError::Conflict(format!(
        "cart of {} changed since version {}",
        cart.username, cart.version
    ))
}

/// Orders (with their items) matching `filter`, newest first, in one query; both backends run it.
pub(super) fn order_select_sql(filter: &str) -> String {
    format!(
        "SELECT o.id, o.username, o.total_amount, o.status, o.payment_id, o.failure_reason, \
                o.idempotency_key, o.version, o.created_at, \
                i.product_id, i.product_name, i.price, i.quantity \
         FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         WHERE {filter} ORDER BY o.id DESC, i.id"
    )
}

fn payment_status(s: &str) -> ServiceResult<PaymentStatus> {
    match s {
        "SUCCESS" => Ok(PaymentStatus::Success),
        "FAILED" => Ok(PaymentStatus::Failed),
        other => Err(crate::ServiceError::Internal(format!("stored payment status {other:?}"))),
    }
}

fn payment_status_str(s: PaymentStatus) -> &'static str {
    match s {
        PaymentStatus::Success => "SUCCESS",
        PaymentStatus::Failed => "FAILED",
    }
}

fn role(s: &str) -> ServiceResult<Role> {
    match s {
        "USER" => Ok(Role::User),
        "ADMIN" => Ok(Role::Admin),
        other => Err(crate::ServiceError::Internal(format!("stored role {other:?}"))),
    }
}
