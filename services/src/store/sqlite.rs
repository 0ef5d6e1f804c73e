//! The SQLite repositories (embedded mode). Money is stored as canonical decimal text, since
//! SQLite's numeric types would round it through floating point; times as RFC 3339 text.
//!
//! Every method is one closure run on the database's own threads ([`crate::sqlite_db`]): a
//! whole transaction costs one thread hop. Write transactions start with `BEGIN IMMEDIATE`: they
//! take the write lock up front (waiting for it under the busy timeout) instead of reading first
//! and failing with SQLITE_BUSY when another connection, in this process or another, wrote in
//! between.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use shop_actors::model::{Cart, CartItem, CheckoutHold, NewOrder, Order, OrderEvent, OrderItem};
use shop_actors::ports::{CartStore, OrderStore, StoreError};
use uuid::Uuid;

use super::{
    Bind, NewPayment, NewUserRow, OrderRepo, OrderSummary, PaymentStore, PaymentSummary, ProductStore,
    UserStore, order_select_sql, payment_status, payment_status_str, role,
};
use crate::auth::User;
use crate::db::{decimal, money_text};
use crate::error::{ServiceError, ServiceResult};
use crate::payment::Payment;
use crate::product::{Product, ProductInput};
use crate::sqlite_db::{SqliteDb, SqliteError, is_unique_violation};

impl From<SqliteError> for ServiceError {
    fn from(e: SqliteError) -> Self {
        ServiceError::Internal(format!("database: {e}"))
    }
}

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(e: impl std::fmt::Display) -> SqliteError {
    SqliteError::Decode(e.to_string())
}

/// Times as sqlx wrote them before this store existed, so old and new rows read alike.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, SqliteError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%F %T%.f")
        .map(|t| t.and_utc())
        .map_err(|e| SqliteError::Decode(format!("stored time {s:?}: {e}")))
}

fn time_at(row: &Row<'_>, column: &str) -> Result<DateTime<Utc>, SqliteError> {
    parse_ts(&row.get::<_, String>(column)?)
}

fn money_at(row: &Row<'_>, column: &str) -> Result<rust_decimal::Decimal, SqliteError> {
    decimal(&row.get::<_, String>(column)?).map_err(decode)
}

fn quantity_at(row: &Row<'_>, column: &str) -> Result<u32, SqliteError> {
    let q: i64 = row.get(column)?;
    u32::try_from(q).map_err(|_| SqliteError::Decode(format!("stored quantity {q}")))
}

// ---------------------------------------------------------------------------------------- users

pub struct Users(pub SqliteDb);

#[async_trait]
impl UserStore for Users {
    async fn insert(&self, u: NewUserRow<'_>) -> ServiceResult<User> {
        let (username, email, hash) = (u.username.to_owned(), u.email.to_owned(), u.password_hash.to_owned());
        let (role, created_at) = (u.role, u.created_at);
        let inserted = self
            .0
            .write
            .run(move |c| {
                c.prepare_cached(
                    "INSERT INTO users (username, email, password, role, created_at) VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![username, email, hash, role.as_str(), ts(created_at)])?;
                Ok((c.last_insert_rowid(), username, email))
            })
            .await;
        match inserted {
            Ok((id, username, email)) => Ok(User { id, username, email, role, created_at }),
            Err(e) if is_unique_violation(&e) => {
                Err(ServiceError::Conflict("that username or email is already registered".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn credentials(&self, username: &str) -> ServiceResult<Option<(String, crate::auth::Role)>> {
        let username = username.to_owned();
        let row = self
            .0
            .read
            .run(move |c| {
                Ok(c.prepare_cached("SELECT password, role FROM users WHERE username = ?")?
                    .query_row([username], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .optional()?)
            })
            .await?;
        row.map(|(hash, r)| Ok((hash, role(&r)?))).transpose()
    }

    async fn find(&self, username: &str) -> ServiceResult<Option<User>> {
        let username = username.to_owned();
        let row = self
            .0
            .read
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id, username, email, role, created_at FROM users WHERE username = ?",
                )?;
                let mut rows = stmt.query([username])?;
                let Some(r) = rows.next()? else { return Ok(None) };
                Ok(Some((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    time_at(r, "created_at")?,
                )))
            })
            .await?;
        row.map(|(id, username, email, r, created_at)| {
            Ok(User { id, username, email, role: role(&r)?, created_at })
        })
        .transpose()
    }

    async fn make_admin(&self, username: &str, password_hash: &str) -> ServiceResult<bool> {
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        let changed = self
            .0
            .write
            .run(move |c| {
                Ok(c.prepare_cached("UPDATE users SET password = ?, role = 'ADMIN' WHERE username = ?")?
                    .execute(params![hash, username])?)
            })
            .await?;
        Ok(changed > 0)
    }
}

// ------------------------------------------------------------------------------------- products

pub struct Products(pub SqliteDb);

const PRODUCT_COLUMNS: &str = "id, name, description, price, stock, created_at, updated_at";

fn product(row: &Row<'_>) -> Result<Product, SqliteError> {
    Ok(Product {
        id: row.get("id")?,
        name: row.get("name")?,
        description: row.get("description")?,
        price: money_at(row, "price")?,
        stock: row.get("stock")?,
        created_at: time_at(row, "created_at")?,
        updated_at: time_at(row, "updated_at")?,
    })
}

/// The rows `sql` answers with `params`, each turned into a product.
fn products(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Product>, SqliteError> {
    rows(c, sql, params, product)
}

/// The rows `sql` answers with `params`, each decoded by `decode`.
fn rows<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&Row<'_>) -> Result<T, SqliteError>,
) -> Result<Vec<T>, SqliteError> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(decode(row)?);
    }
    Ok(found)
}

#[async_trait]
impl ProductStore for Products {
    async fn list(&self) -> ServiceResult<Vec<Product>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id");
        Ok(self.0.read.run(move |c| products(c, &sql, [])).await?)
    }

    async fn get(&self, id: i64) -> ServiceResult<Option<Product>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?");
        Ok(self.0.read.run(move |c| products(c, &sql, [id])).await?.pop())
    }

    async fn create(&self, p: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Product> {
        let sql = format!(
            "INSERT INTO products (name, description, price, stock, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING {PRODUCT_COLUMNS}"
        );
        let p = p.clone();
        let created = self
            .0
            .write
            .run(move |c| {
                products(
                    c,
                    &sql,
                    params![p.name, p.description, money_text(p.price), p.stock, ts(now), ts(now)],
                )
            })
            .await?;
        created.into_iter().next().ok_or_else(|| ServiceError::Internal("the insert returned no row".into()))
    }

    async fn update(&self, id: i64, p: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Option<Product>> {
        let sql = format!(
            "UPDATE products SET name = ?, description = ?, price = ?, stock = ?, updated_at = ? \
             WHERE id = ? RETURNING {PRODUCT_COLUMNS}"
        );
        let p = p.clone();
        let updated = self
            .0
            .write
            .run(move |c| {
                products(c, &sql, params![p.name, p.description, money_text(p.price), p.stock, ts(now), id])
            })
            .await?;
        Ok(updated.into_iter().next())
    }

    async fn delete(&self, id: i64) -> ServiceResult<bool> {
        let deleted = self
            .0
            .write
            .run(move |c| Ok(c.prepare_cached("DELETE FROM products WHERE id = ?")?.execute([id])?))
            .await?;
        Ok(deleted > 0)
    }

    async fn seed_if_empty(&self, products: &[ProductInput], now: DateTime<Utc>) -> ServiceResult<usize> {
        let products = products.to_vec();
        Ok(self
            .0
            .write
            .run(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let count: i64 = tx.query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0))?;
                if count > 0 || products.is_empty() {
                    return Ok(0);
                }
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO products (name, description, price, stock, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                    )?;
                    for p in &products {
                        insert.execute(params![
                            p.name,
                            p.description,
                            money_text(p.price),
                            p.stock,
                            ts(now),
                            ts(now)
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(products.len())
            })
            .await?)
    }

    async fn negative_stock(&self) -> ServiceResult<Vec<i64>> {
        Ok(self
            .0
            .read
            .run(|c| {
                let mut stmt = c.prepare_cached("SELECT id FROM products WHERE stock < 0")?;
                let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
                Ok(ids)
            })
            .await?)
    }
}

// ---------------------------------------------------------------------------------------- carts

/// One thread hop to read a cart, one transaction to write it.
pub struct Carts(pub SqliteDb);

fn checkout_hold(row: &Row<'_>) -> Result<Option<CheckoutHold>, SqliteError> {
    let id: Option<String> = row.get("checkout_id")?;
    let expires_at: Option<String> = row.get("checkout_expires_at")?;
    Ok(match (id, expires_at) {
        (Some(id), Some(expires_at)) => Some(CheckoutHold {
            id: id.parse().map_err(|e| SqliteError::Decode(format!("stored checkout id {id:?}: {e}")))?,
            expires_at: parse_ts(&expires_at)?,
        }),
        _ => None,
    })
}

/// The cart row's compare-and-set on its version, carrying the hold: part of every cart save, and
/// the whole of a hold-only one.
const CART_ROW_UPDATE: &str = "UPDATE cart SET version = version + 1, checkout_id = ?, checkout_expires_at = ?, \
                               updated_at = ? WHERE username = ? AND version = ?";

/// Why a cart write did not happen.
enum CartWrite {
    Saved,
    /// The stored version is not the one the write was based on.
    Stale,
}

fn save_cart(c: &mut Connection, cart: &Cart, applied_order: Option<i64>) -> Result<CartWrite, SqliteError> {
    let now = ts(crate::db::now());
    let hold = cart.checkout.map(|h| (h.id.to_string(), ts(h.expires_at)));
    let (hold_id, hold_expiry) = (hold.as_ref().map(|h| &h.0), hold.as_ref().map(|h| &h.1));
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let cart_id: Option<i64> = if cart.version == 0 {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO cart (username, version, checkout_id, checkout_expires_at, created_at, updated_at) \
                 VALUES (?, 1, ?, ?, ?, ?) RETURNING id",
            )?
            .query_row(params![cart.username, hold_id, hold_expiry, now, now], |r| r.get(0))
            .map_err(SqliteError::from);
        match inserted {
            Ok(id) => Some(id),
            Err(e) if is_unique_violation(&e) => None,
            Err(e) => return Err(e),
        }
    } else {
        tx.prepare_cached(&format!("{CART_ROW_UPDATE} RETURNING id"))?
            .query_row(params![hold_id, hold_expiry, now, cart.username, cart.version], |r| r.get(0))
            .optional()?
    };
    let Some(cart_id) = cart_id else { return Ok(CartWrite::Stale) };
    tx.prepare_cached("DELETE FROM cart_items WHERE cart_id = ?")?.execute([cart_id])?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO cart_items (cart_id, product_id, product_name, price, quantity) VALUES (?, ?, ?, ?, ?)",
        )?;
        for i in &cart.items {
            insert.execute(params![
                cart_id,
                i.product_id,
                i.product_name,
                money_text(i.price),
                i64::from(i.quantity)
            ])?;
        }
    }
    if let Some(order_id) = applied_order {
        let applied = tx
            .prepare_cached(
                "INSERT INTO cart_applied_orders (username, order_id, applied_at) VALUES (?, ?, ?)",
            )?
            .execute(params![cart.username, order_id, now])
            .map_err(SqliteError::from);
        match applied {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(CartWrite::Stale),
            Err(e) => return Err(e),
        }
    }
    tx.commit()?;
    Ok(CartWrite::Saved)
}

#[async_trait]
impl CartStore for Carts {
    async fn load(&self, username: &str) -> Result<Cart, StoreError> {
        let username = username.to_owned();
        self.0
            .read
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT c.version, c.checkout_id, c.checkout_expires_at, \
                            i.product_id, i.product_name, i.price, i.quantity \
                     FROM cart c LEFT JOIN cart_items i ON i.cart_id = c.id WHERE c.username = ? ORDER BY i.id",
                )?;
                let mut rows = stmt.query([&username])?;
                let mut cart = Cart::empty(username.as_str());
                while let Some(row) = rows.next()? {
                    cart.version = row.get("version")?;
                    cart.checkout = checkout_hold(row)?;
                    let Some(product_id) = row.get::<_, Option<i64>>("product_id")? else { continue };
                    cart.items.push(CartItem {
                        product_id,
                        product_name: row.get("product_name")?,
                        price: money_at(row, "price")?,
                        quantity: quantity_at(row, "quantity")?,
                    });
                }
                Ok(cart)
            })
            .await
            .map_err(store_err)
    }

    async fn save(&self, cart: &Cart, applied_order: Option<i64>) -> Result<i64, StoreError> {
        let (owned, version) = (cart.clone(), cart.version);
        match self.0.write.run(move |c| save_cart(c, &owned, applied_order)).await.map_err(store_err)? {
            CartWrite::Saved => Ok(version + 1),
            CartWrite::Stale => Err(super::stale_cart(cart)),
        }
    }

    async fn save_hold(&self, cart: &Cart) -> Result<i64, StoreError> {
        let (username, version) = (cart.username.clone(), cart.version);
        let hold = cart.checkout.map(|h| (h.id.to_string(), ts(h.expires_at)));
        let changed = self
            .0
            .write
            .run(move |c| {
                let (id, expires_at) = (hold.as_ref().map(|h| &h.0), hold.as_ref().map(|h| &h.1));
                Ok(c.prepare_cached(CART_ROW_UPDATE)?.execute(params![
                    id,
                    expires_at,
                    ts(crate::db::now()),
                    username,
                    version
                ])?)
            })
            .await
            .map_err(store_err)?;
        if changed == 0 {
            return Err(super::stale_cart(cart));
        }
        Ok(version + 1)
    }

    async fn checkout_applied(&self, username: &str, order_id: i64) -> Result<bool, StoreError> {
        let username = username.to_owned();
        self.0
            .read
            .run(move |c| {
                Ok(c.prepare_cached("SELECT 1 FROM cart_applied_orders WHERE username = ? AND order_id = ?")?
                    .exists(params![username, order_id])?)
            })
            .await
            .map_err(store_err)
    }
}

// ------------------------------------------------------------------------------------- payments

pub struct Payments(pub SqliteDb);

const PAYMENT_COLUMNS: &str =
    "id, order_id, user_id, amount, status, transaction_id, failure_reason, created_at";

fn payment(row: &Row<'_>) -> Result<Payment, SqliteError> {
    Ok(Payment {
        id: row.get("id")?,
        order_id: row.get("order_id")?,
        user_id: row.get("user_id")?,
        amount: money_at(row, "amount")?,
        status: payment_status(&row.get::<_, String>("status")?).map_err(decode)?,
        transaction_id: row.get("transaction_id")?,
        failure_reason: row.get("failure_reason")?,
        created_at: time_at(row, "created_at")?,
    })
}

fn payments(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Payment>, SqliteError> {
    rows(c, sql, params, payment)
}

#[async_trait]
impl PaymentStore for Payments {
    async fn find_by_order(&self, order_id: i64) -> ServiceResult<Option<Payment>> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = ?");
        Ok(self.0.read.run(move |c| payments(c, &sql, [order_id])).await?.pop())
    }

    async fn insert(&self, p: NewPayment<'_>) -> ServiceResult<Option<Payment>> {
        let sql = format!(
            "INSERT INTO payments (order_id, user_id, amount, status, transaction_id, failure_reason, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {PAYMENT_COLUMNS}"
        );
        let values = (
            p.order_id,
            p.user_id.to_owned(),
            money_text(p.amount),
            payment_status_str(p.status),
            p.transaction_id.map(str::to_owned),
            p.failure_reason.map(str::to_owned),
            ts(p.created_at),
        );
        let inserted = self
            .0
            .write
            .run(move |c| {
                let (order_id, user_id, amount, status, txn, reason, at) = values;
                payments(c, &sql, params![order_id, user_id, amount, status, txn, reason, at])
            })
            .await;
        match inserted {
            Ok(rows) => Ok(rows.into_iter().next()),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn summaries(&self) -> ServiceResult<Vec<PaymentSummary>> {
        Ok(self
            .0
            .read
            .run(|c| {
                rows(c, "SELECT id, order_id, status, amount FROM payments", [], |r| {
                    Ok(PaymentSummary {
                        id: r.get("id")?,
                        order_id: r.get("order_id")?,
                        status: payment_status(&r.get::<_, String>("status")?).map_err(decode)?,
                        amount: money_at(r, "amount")?,
                    })
                })
            })
            .await?)
    }
}

// --------------------------------------------------------------------------------------- orders

pub struct Orders(pub SqliteDb);

impl Orders {
    /// Orders (with their items) matching `filter`, newest first, in one query.
    async fn select(&self, filter: &str, binds: &[Bind<'_>]) -> Result<Vec<Order>, StoreError> {
        let sql = order_select_sql(filter);
        let binds: Vec<rusqlite::types::Value> = binds
            .iter()
            .map(|b| match b {
                Bind::Int(v) => rusqlite::types::Value::Integer(*v),
                Bind::Text(v) => rusqlite::types::Value::Text((*v).to_owned()),
            })
            .collect();
        self.0
            .read
            .run(move |c| {
                let mut stmt = c.prepare_cached(&sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(binds))?;
                group_orders(&mut rows)
            })
            .await
            .map_err(store_err)
    }
}

fn group_orders(rows: &mut rusqlite::Rows<'_>) -> Result<Vec<Order>, SqliteError> {
    let mut orders: Vec<Order> = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get("id")?;
        if orders.last().is_none_or(|o| o.id != id) {
            let status: String = row.get("status")?;
            orders.push(Order {
                id,
                username: row.get("username")?,
                items: Vec::new(),
                total_amount: money_at(row, "total_amount")?,
                status: status.parse().map_err(decode)?,
                payment_id: row.get("payment_id")?,
                failure_reason: row.get("failure_reason")?,
                idempotency_key: row.get("idempotency_key")?,
                created_at: time_at(row, "created_at")?,
                version: row.get("version")?,
            });
        }
        if let (Some(order), Some(product_id)) = (orders.last_mut(), row.get::<_, Option<i64>>("product_id")?)
        {
            order.items.push(OrderItem {
                product_id,
                product_name: row.get("product_name")?,
                price: money_at(row, "price")?,
                quantity: quantity_at(row, "quantity")?,
            });
        }
    }
    Ok(orders)
}

fn push_event(tx: &Connection, event: &OrderEvent, now: &str) -> Result<(), SqliteError> {
    let payload = serde_json::to_string(event).map_err(decode)?;
    tx.prepare_cached(
        "INSERT INTO order_outbox (event_id, order_id, payload, created_at) VALUES (?, ?, ?, ?)",
    )?
    .execute(params![event.event_id.to_string(), event.order_id, payload, now])?;
    Ok(())
}

/// What an order write came to.
enum OrderWrite<T> {
    Done(T),
    DuplicateKey,
    Stale,
}

#[async_trait]
impl OrderStore for Orders {
    async fn create(&self, new: NewOrder) -> Result<Order, StoreError> {
        let username = new.username.clone();
        let written = self
            .0
            .write
            .run(move |c| {
                let now = crate::db::now();
                let at = ts(now);
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO orders (username, total_amount, status, idempotency_key, version, created_at, updated_at) \
                         VALUES (?, ?, 'PENDING', ?, 1, ?, ?) RETURNING id",
                    )?
                    .query_row(
                        params![new.username, money_text(new.total_amount), new.idempotency_key, at, at],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(SqliteError::from);
                let id = match inserted {
                    Ok(id) => id,
                    Err(e) if is_unique_violation(&e) => return Ok(OrderWrite::DuplicateKey),
                    Err(e) => return Err(e),
                };
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO order_items (order_id, product_id, product_name, price, quantity) VALUES (?, ?, ?, ?, ?)",
                    )?;
                    for i in &new.items {
                        insert.execute(params![id, i.product_id, i.product_name, money_text(i.price), i64::from(i.quantity)])?;
                    }
                }
                let checkout_id = new.checkout_id;
                let order = Order::created(id, new, now);
                push_event(&tx, &OrderEvent::created(&order, checkout_id), &at)?;
                tx.commit()?;
                Ok(OrderWrite::Done(order))
            })
            .await
            .map_err(store_err)?;
        match written {
            OrderWrite::Done(order) => Ok(order),
            OrderWrite::DuplicateKey | OrderWrite::Stale => {
                Err(StoreError::Duplicate(format!("idempotency key of {username} already used")))
            }
        }
    }

    async fn load(&self, id: i64) -> Result<Option<Order>, StoreError> {
        Ok(self.select("o.id = ?", &[Bind::Int(id)]).await?.pop())
    }

    async fn find_by_idempotency_key(&self, username: &str, key: &str) -> Result<Option<Order>, StoreError> {
        Ok(self
            .select("o.username = ? AND o.idempotency_key = ?", &[Bind::Text(username), Bind::Text(key)])
            .await?
            .pop())
    }

    async fn update(&self, order: &Order, event: Option<&OrderEvent>) -> Result<i64, StoreError> {
        let (o, event) = (order.clone(), event.cloned());
        let written = self
            .0
            .write
            .run(move |c| {
                let now = ts(crate::db::now());
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let changed = tx
                    .prepare_cached(
                        "UPDATE orders SET status = ?, payment_id = ?, failure_reason = ?, version = version + 1, \
                         updated_at = ? WHERE id = ? AND version = ?",
                    )?
                    .execute(params![o.status.as_str(), o.payment_id, o.failure_reason, now, o.id, o.version])?;
                if changed == 0 {
                    return Ok(OrderWrite::Stale);
                }
                if let Some(event) = &event {
                    push_event(&tx, event, &now)?;
                }
                tx.commit()?;
                Ok(OrderWrite::Done(()))
            })
            .await
            .map_err(store_err)?;
        match written {
            OrderWrite::Done(()) => Ok(order.version + 1),
            OrderWrite::Stale | OrderWrite::DuplicateKey => Err(StoreError::Conflict(format!(
                "order {} changed since version {}",
                order.id, order.version
            ))),
        }
    }

    async fn list_for_user(&self, username: &str) -> Result<Vec<Order>, StoreError> {
        self.select("o.username = ?", &[Bind::Text(username)]).await
    }

    async fn unsent_events(&self, limit: usize) -> Result<Vec<OrderEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.0
            .read
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT payload FROM order_outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?",
                )?;
                let mut rows = stmt.query([limit])?;
                let mut events = Vec::new();
                while let Some(row) = rows.next()? {
                    events.push(serde_json::from_str(&row.get::<_, String>(0)?).map_err(decode)?);
                }
                Ok(events)
            })
            .await
            .map_err(store_err)
    }

    async fn mark_sent(&self, event_ids: &[Uuid]) -> Result<(), StoreError> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = event_ids.iter().map(Uuid::to_string).collect();
        self.0
            .write
            .run(move |c| {
                let now = ts(crate::db::now());
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut mark = tx.prepare_cached(
                        "UPDATE order_outbox SET sent_at = ? WHERE event_id = ? AND sent_at IS NULL",
                    )?;
                    for id in &ids {
                        mark.execute(params![now, id])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
            .map_err(store_err)
    }
}

#[async_trait]
impl OrderRepo for Orders {
    async fn summaries(&self) -> ServiceResult<Vec<OrderSummary>> {
        Ok(self
            .0
            .read
            .run(|c| {
                rows(c, "SELECT id, status, payment_id, total_amount FROM orders", [], |r| {
                    Ok(OrderSummary {
                        id: r.get("id")?,
                        status: r.get("status")?,
                        payment_id: r.get("payment_id")?,
                        total_amount: money_at(r, "total_amount")?,
                    })
                })
            })
            .await?)
    }
}
