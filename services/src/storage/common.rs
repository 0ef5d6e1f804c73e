//! What both backends share: pool settings, money and time as stored, error classification and
//! the SQL both run. Nothing here knows which backend it serves.

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use shop_actors::model::{Cart, PaymentStatus};
use shop_actors::ports::StoreError;

use crate::ServiceError;
use crate::auth::Role;
use crate::error::ServiceResult;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// SQLite: read connections per database (writes always use one).
    pub read_connections: u32,
    /// MySQL: connections per database pool.
    pub max_connections: u32,
    /// How long a query waits for a free connection.
    pub acquire_timeout: Duration,
    /// MySQL: a connection that has rested in the pool this long is pinged before it is used
    /// ([`super::mysql::pool`]).
    pub ping_after_idle: Duration,
}

impl Default for PoolConfig {
    /// Sized for a 2-core machine: more connections than that only queue inside the server.
    fn default() -> Self {
        Self {
            read_connections: 4,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            ping_after_idle: Duration::from_secs(1),
        }
    }
}

/// Parses money stored as decimal text.
pub fn decimal(text: &str) -> ServiceResult<Decimal> {
    Decimal::from_str(text).map_err(|e| ServiceError::Internal(format!("stored amount {text:?}: {e}")))
}

/// Money as stored: always two places.
pub fn money_text(amount: Decimal) -> String {
    crate::money::two_places(amount).to_string()
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Whether `e` is a UNIQUE constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A bind value of the order queries, whose filters differ only in their parameters.
pub(crate) enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

/// A cart write refused because the stored cart is no longer at the version it was based on.
pub(crate) fn stale_cart(cart: &Cart) -> StoreError {
    StoreError::Conflict(format!("cart of {} changed since version {}", cart.username, cart.version))
}

/// Orders (with their items) matching `filter`, newest first, in one query; both backends run it.
pub(crate) fn order_select_sql(filter: &str) -> String {
    format!(
        "SELECT o.id, o.username, o.total_amount, o.status, o.payment_id, o.failure_reason, \
                o.idempotency_key, o.version, o.created_at, \
                i.product_id, i.product_name, i.price, i.quantity \
         FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         WHERE {filter} ORDER BY o.id DESC, i.id"
    )
}

pub(crate) fn payment_status(s: &str) -> ServiceResult<PaymentStatus> {
    match s {
        "SUCCESS" => Ok(PaymentStatus::Success),
        "FAILED" => Ok(PaymentStatus::Failed),
        other => Err(ServiceError::Internal(format!("stored payment status {other:?}"))),
    }
}

pub(crate) fn payment_status_str(s: PaymentStatus) -> &'static str {
    match s {
        PaymentStatus::Success => "SUCCESS",
        PaymentStatus::Failed => "FAILED",
    }
}

pub(crate) fn role(s: &str) -> ServiceResult<Role> {
    match s {
        "USER" => Ok(Role::User),
        "ADMIN" => Ok(Role::Admin),
        other => Err(ServiceError::Internal(format!("stored role {other:?}"))),
    }
}
