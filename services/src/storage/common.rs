//! What both backends share: pool settings, money and time as stored, error classification and
//! the SQL both run. Nothing here knows which backend it serves.

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use shop_actors::model::{Cart, PaymentStatus};
use shop_actors::ports::StoreError;

use crate::ServiceError;
use crate::auth::Role;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::error::ServiceResult;

/// How busy one set of a database's connections is (the services' `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolStats {
    /// `pool` (MySQL), `writer` or `readers` (SQLite).
    pub lane: &'static str,
    pub size: usize,
    /// Connections running a piece of work now.
    pub in_use: usize,
    /// Pieces of work waiting for a connection now.
    pub waiting: usize,
    /// Pieces of work that found every connection busy, and how long work waited in all.
    pub waits: u64,
    pub wait_seconds: f64,
    /// Pieces of work run to the end (on the SQLite writer: write transactions as its callers
    /// see them).
    pub work: u64,
    /// Commits made (the SQLite writer, which groups its work under shared commits; `None` where
    /// each piece of work is its own).
    pub commits: Option<u64>,
}

/// The counters behind a [`PoolStats`]: a few relaxed atomic adds per piece of work.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    pub in_use: AtomicUsize,
    pub waiting: AtomicUsize,
    pub waits: AtomicU64,
    pub wait_micros: AtomicU64,
    pub work: AtomicU64,
    pub commits: AtomicU64,
}

impl Usage {
    pub fn stats(&self, lane: &'static str, size: usize) -> PoolStats {
        PoolStats {
            lane,
            size,
            in_use: self.in_use.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            wait_seconds: self.wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
            work: self.work.load(Ordering::Relaxed),
            commits: None,
        }
    }

    /// Counts time spent waiting since `since`.
    pub fn waited(&self, since: std::time::Instant) {
        let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.wait_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// SQLite: read connections per database (writes always use one).
    pub read_connections: u32,
    /// SQLite: the most writes the writer puts under one commit (1: each write commits alone).
    pub group_commit: usize,
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
            group_commit: super::sqlite::db::GROUP_COMMIT,
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

/// The filter of [`order_select_sql`] for one page of a user's orders, newest first. Binds:
/// username, the cursor (an order id; `i64::MAX` for the first page), the page size. The page is
/// chosen among the orders alone (a LIMIT over the join would count item rows), through the
/// `(username, id)` index; the derived table inside `IN` is how MariaDB and MySQL take a LIMIT
/// there.
pub(crate) const USER_PAGE_FILTER: &str = "o.id IN (SELECT id FROM (SELECT id FROM orders \
     WHERE username = ? AND id < ? ORDER BY id DESC LIMIT ?) page)";

/// The binds of [`USER_PAGE_FILTER`].
pub(crate) fn user_page_binds(username: &str, page: shop_actors::ports::Page) -> [Bind<'_>; 3] {
    [Bind::Text(username), Bind::Int(page.after.unwrap_or(i64::MAX)), Bind::Int(i64::from(page.limit))]
}

/// Orders (with their items) matching `filter`, newest first, in one query; both backends run it.
pub(crate) fn order_select_sql(filter: &str) -> String {
    format!(
        "SELECT o.id, o.username, o.total_amount, o.status, o.payment_id, o.failure_reason, \
                o.idempotency_key, o.checkout_id, o.unsettled, o.version, o.created_at, \
                i.product_id, i.product_name, i.price, i.quantity \
         FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         WHERE {filter} ORDER BY o.id DESC, i.id"
    )
}

pub(crate) fn payment_status(s: &str) -> ServiceResult<PaymentStatus> {
    s.parse().map_err(|_| ServiceError::Internal(format!("stored payment status {s:?}")))
}

/// A payment's compare-and-set move from one status to the next; both backends run it. Binds:
/// status, transaction id, gateway response, failure reason, refunded at, refund reason, updated
/// at (each but the status and the time kept when NULL), then order id and the expected status.
pub(crate) const PAYMENT_UPDATE_SQL: &str = "UPDATE payments SET status = ?, \
     transaction_id = COALESCE(?, transaction_id), gateway_response = COALESCE(?, gateway_response), \
     failure_reason = COALESCE(?, failure_reason), refunded_at = COALESCE(?, refunded_at), \
     refund_reason = COALESCE(?, refund_reason), updated_at = ? WHERE order_id = ? AND status = ?";

pub(crate) fn role(s: &str) -> ServiceResult<Role> {
    match s {
        "USER" => Ok(Role::User),
        "ADMIN" => Ok(Role::Admin),
        other => Err(ServiceError::Internal(format!("stored role {other:?}"))),
    }
}

/// The ids of checkouts left unfinished since before a time (PENDING, or with an outcome whose
/// later steps are open), oldest first; both backends run it (binds: before, before, limit).
pub(crate) const UNFINISHED_SQL: &str = "SELECT id FROM ( \
       SELECT id FROM orders WHERE status = 'PENDING' AND updated_at < ? \
       UNION SELECT id FROM orders WHERE unsettled = 1 AND updated_at < ?) stuck \
     ORDER BY id LIMIT ?";

/// The recovery lease of one order: taken if free, expired or already ours (binds: owner,
/// until, id, now, owner).
pub(crate) const CLAIM_RECOVERY_SQL: &str = "UPDATE orders SET recovery_owner = ?, recovery_until = ? \
     WHERE id = ? AND (recovery_until IS NULL OR recovery_until < ? OR recovery_owner = ?)";

/// The outbox relay's lease, if free, expired or already ours (binds: owner, until, now, owner).
pub(crate) const CLAIM_RELAY_SQL: &str = "UPDATE outbox_relay_lease SET owner = ?, lease_until = ? \
     WHERE name = 'relay' AND (lease_until < ? OR owner = ?)";

/// A stored checkout id.
pub(crate) fn checkout_id(text: Option<String>) -> ServiceResult<Option<uuid::Uuid>> {
    text.map(|t| t.parse().map_err(|e| ServiceError::Internal(format!("stored checkout id {t:?}: {e}"))))
        .transpose()
}

/// Where each product's units are: stocked, on hand, reserved, sold; both backends run it.
pub(crate) const STOCK_LEDGER_SQL: &str = "SELECT p.id, p.units_stocked, p.stock, \
       COALESCE(SUM(CASE WHEN r.status = 'RESERVED' THEN r.quantity ELSE 0 END), 0) AS reserved, \
       COALESCE(SUM(CASE WHEN r.status = 'COMMITTED' THEN r.quantity ELSE 0 END), 0) AS sold \
     FROM products p LEFT JOIN stock_reservations r ON r.product_id = p.id \
     GROUP BY p.id, p.units_stocked, p.stock ORDER BY p.id";

/// Each checkout's reservation lines by status, with their earliest expiry.
pub(crate) const RESERVATIONS_SQL: &str = "SELECT checkout_id, status, COUNT(*) AS line_count, MIN(expires_at) AS expires_at \
     FROM stock_reservations GROUP BY checkout_id, status";

/// Checkouts holding a RESERVED line past its expiry (binds: now, limit).
pub(crate) const EXPIRED_RESERVATIONS_SQL: &str = "SELECT DISTINCT checkout_id FROM stock_reservations \
     WHERE status = 'RESERVED' AND expires_at < ? LIMIT ?";

/// A product's stock taken if it has enough (binds: quantity, id, quantity).
pub(crate) const TAKE_STOCK_SQL: &str = "UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?";

/// A product's stock given back (binds: quantity, id).
pub(crate) const RETURN_STOCK_SQL: &str = "UPDATE products SET stock = stock + ? WHERE id = ?";

/// An admin's write of a product: the change in stock is a change in units stocked too
/// (assigned first: MySQL reads later assignments' columns as already updated). Binds: stock,
/// name, description, price, stock, updated at, id.
pub(crate) const PRODUCT_UPDATE_SQL: &str = "UPDATE products SET units_stocked = units_stocked + ? - stock, \
     name = ?, description = ?, price = ?, stock = ?, updated_at = ? WHERE id = ?";

/// The outbox's outcome events: order id, and 1 once sent.
pub(crate) const OUTCOME_EVENTS_SQL: &str = "SELECT order_id, CASE WHEN sent_at IS NULL THEN 0 ELSE 1 END AS sent \
     FROM order_outbox WHERE payload NOT LIKE '%\"eventType\":\"ORDER_CREATED\"%'";

/// A checkout's RESERVED lines moved to a status (binds: status, updated at, checkout id).
pub(crate) const END_RESERVATION_SQL: &str = "UPDATE stock_reservations SET status = ?, updated_at = ? \
     WHERE checkout_id = ? AND status = 'RESERVED'";

/// What a shortage names: the product's name and what is left of it (binds: id).
/// Unsent outbox rows and the oldest one's time (`/metrics`).
pub(crate) const OUTBOX_BACKLOG_SQL: &str =
    "SELECT COUNT(*), MIN(created_at) FROM order_outbox WHERE sent_at IS NULL";

/// One checkout's reservation lines (an order's history).
pub(crate) const RESERVATION_LINES_SQL: &str =
    "SELECT status, quantity, created_at, updated_at FROM stock_reservations WHERE checkout_id = ?";

/// An order's own rows of its history: the order, then its outbox events.
pub(crate) const ORDER_TIMES_SQL: &str =
    "SELECT created_at, shipped_at, delivered_at FROM orders WHERE id = ?";
pub(crate) const ORDER_EVENTS_SQL: &str =
    "SELECT payload, created_at, sent_at FROM order_outbox WHERE order_id = ? ORDER BY id";

pub(crate) const SHORTAGE_SQL: &str = "SELECT name, stock FROM products WHERE id = ?";
