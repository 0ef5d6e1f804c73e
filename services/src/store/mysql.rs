//! The MySQL repositories (production; MariaDB 10.11 and MySQL 8). Money is `DECIMAL(10,2)`.
//!
//! Every write runs through `retry_transient!`: a deadlock (1213), a lock wait timeout (1205)
//! or a snapshot conflict (1020) aborts only the transaction, which is then run again from the
//! start, a bounded number of times with growing back-off. A write based on a stale version is
//! not transient: it is reported as a conflict for the caller to reload and decide again.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shop_actors::model::{Cart, CartItem, CheckoutHold, NewOrder, Order, OrderEvent, OrderItem};
use shop_actors::ports::{CartStore, OrderStore, StoreError};
use sqlx::Connection;
use sqlx::mysql::{MySql, MySqlArguments, MySqlConnection, MySqlDatabaseError, MySqlRow};
use sqlx::{AssertSqlSafe, QueryBuilder, Row};
use uuid::Uuid;

use super::{
    Bind, NewPayment, NewUserRow, OrderRepo, OrderSummary, PaymentStore, PaymentSummary, ProductStore,
    UserStore, order_select_sql, payment_status, payment_status_str, role,
};
use crate::auth::User;
use crate::db::is_unique_violation;
use crate::error::{ServiceError, ServiceResult};
use crate::mysql_pool::MySqlDb;
use crate::payment::Payment;
use crate::product::{Product, ProductInput};

/// Attempts of one transaction that keeps failing transiently.
pub const TRANSIENT_ATTEMPTS: u32 = 6;

/// Whether MySQL aborted the statement for a reason that running it again can cure.
pub fn is_transient(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|m| matches!(m.number(), 1213 | 1205 | 1020))
}

pub(crate) async fn backoff(attempt: u32) {
    // 5, 10, 20, 40 … ms, with jitter so that the two sides of a deadlock do not meet again.
    let base = 5u64 << attempt.min(6);
    let jitter = u64::from(rand::random::<u8>()) % (base + 1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// Runs `$body` (a transaction, on the connection `$c` of the pool `$db`) until it succeeds, fails
/// for a reason that is not transient, or has been tried [`TRANSIENT_ATTEMPTS`] times.
macro_rules! retry_transient {
    ($db:expr, |$c:ident| $body:block) => {{
        let mut attempt = 1u32;
        loop {
            match $db.run(async |$c: &mut MySqlConnection| $body).await {
                Err(e) if is_transient(&e) && attempt < TRANSIENT_ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, "transient MySQL error; running the transaction again");
                    backoff(attempt).await;
                    attempt += 1;
                }
                result => break result,
            }
        }
    }};
}

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn quantity(q: i32) -> ServiceResult<u32> {
    u32::try_from(q).map_err(|_| ServiceError::Internal(format!("stored quantity {q}")))
}

fn id(v: u64) -> ServiceResult<i64> {
    i64::try_from(v).map_err(|_| ServiceError::Internal(format!("insert id {v} out of range")))
}

// ---------------------------------------------------------------------------------------- users

pub struct Users(pub MySqlDb);

#[async_trait]
impl UserStore for Users {
    async fn insert(&self, u: NewUserRow<'_>) -> ServiceResult<User> {
        let result = retry_transient!(self.0, |c| {
            sqlx::query(
                "INSERT INTO users (username, email, password, role, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(u.username)
            .bind(u.email)
            .bind(u.password_hash)
            .bind(u.role.as_str())
            .bind(u.created_at)
            .execute(&mut *c)
            .await
        });
        match result {
            Ok(done) => Ok(User {
                id: id(done.last_insert_id())?,
                username: u.username.to_owned(),
                email: u.email.to_owned(),
                role: u.role,
                created_at: u.created_at,
            }),
            Err(e) if is_unique_violation(&e) => {
                Err(ServiceError::Conflict("that username or email is already registered".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn credentials(&self, username: &str) -> ServiceResult<Option<(String, crate::auth::Role)>> {
        let row: Option<(String, String)> = self
            .0
            .run(async |c| {
                sqlx::query_as("SELECT password, role FROM users WHERE username = ?")
                    .bind(username)
                    .fetch_optional(c)
                    .await
            })
            .await?;
        row.map(|(hash, r)| Ok((hash, role(&r)?))).transpose()
    }

    async fn find(&self, username: &str) -> ServiceResult<Option<User>> {
        let row: Option<(i64, String, String, String, DateTime<Utc>)> = self
            .0
            .run(async |c| {
                sqlx::query_as("SELECT id, username, email, role, created_at FROM users WHERE username = ?")
                    .bind(username)
                    .fetch_optional(c)
                    .await
            })
            .await?;
        row.map(|(id, username, email, r, created_at)| {
            Ok(User { id, username, email, role: role(&r)?, created_at })
        })
        .transpose()
    }

    async fn make_admin(&self, username: &str, password_hash: &str) -> ServiceResult<bool> {
        let done = retry_transient!(self.0, |c| {
            sqlx::query("UPDATE users SET password = ?, role = 'ADMIN' WHERE username = ?")
                .bind(password_hash)
                .bind(username)
                .execute(&mut *c)
                .await
        })?;
        Ok(done.rows_affected() > 0)
    }
}

// ------------------------------------------------------------------------------------- products

pub struct Products(pub MySqlDb);

const PRODUCT_COLUMNS: &str = "id, name, description, price, stock, created_at, updated_at";

fn product(row: &MySqlRow) -> ServiceResult<Product> {
    Ok(Product {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price: row.try_get("price")?,
        stock: i64::from(row.try_get::<i32, _>("stock")?),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn stock(p: &ProductInput) -> ServiceResult<i32> {
    i32::try_from(p.stock).map_err(|_| ServiceError::Invalid(format!("stock {} is out of range", p.stock)))
}

#[async_trait]
impl ProductStore for Products {
    async fn list(&self) -> ServiceResult<Vec<Product>> {
        let rows = self
            .0
            .run(async |c| {
                sqlx::query(AssertSqlSafe(format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id")))
                    .fetch_all(c)
                    .await
            })
            .await?;
        rows.iter().map(product).collect()
    }

    async fn get(&self, id: i64) -> ServiceResult<Option<Product>> {
        let row = self
            .0
            .run(async |c| {
                sqlx::query(AssertSqlSafe(format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?")))
                    .bind(id)
                    .fetch_optional(c)
                    .await
            })
            .await?;
        row.as_ref().map(product).transpose()
    }

    async fn create(&self, p: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Product> {
        let stock = stock(p)?;
        let done = retry_transient!(self.0, |c| {
            sqlx::query(
                "INSERT INTO products (name, description, price, stock, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&p.name)
            .bind(&p.description)
            .bind(p.price)
            .bind(stock)
            .bind(now)
            .bind(now)
            .execute(&mut *c)
            .await
        })?;
        Ok(Product {
            id: id(done.last_insert_id())?,
            name: p.name.clone(),
            description: p.description.clone(),
            price: p.price,
            stock: p.stock,
            created_at: now,
            updated_at: now,
        })
    }

    async fn update(
        &self,
        product_id: i64,
        p: &ProductInput,
        now: DateTime<Utc>,
    ) -> ServiceResult<Option<Product>> {
        let stock = stock(p)?;
        let done = retry_transient!(self.0, |c| {
            sqlx::query(
                "UPDATE products SET name = ?, description = ?, price = ?, stock = ?, updated_at = ? WHERE id = ?",
            )
            .bind(&p.name)
            .bind(&p.description)
            .bind(p.price)
            .bind(stock)
            .bind(now)
            .bind(product_id)
            .execute(&mut *c)
            .await
        })?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get(product_id).await
    }

    async fn delete(&self, id: i64) -> ServiceResult<bool> {
        let done = retry_transient!(self.0, |c| {
            sqlx::query("DELETE FROM products WHERE id = ?").bind(id).execute(&mut *c).await
        })?;
        Ok(done.rows_affected() > 0)
    }

    async fn seed_if_empty(&self, products: &[ProductInput], now: DateTime<Utc>) -> ServiceResult<usize> {
        if products.is_empty() {
            return Ok(0);
        }
        let stocks = products.iter().map(stock).collect::<ServiceResult<Vec<i32>>>()?;
        // Two instances starting together both lock the empty table's gap; one of them deadlocks,
        // runs again and then finds the catalog seeded. The gap lock needs REPEATABLE READ, which
        // this transaction asks for (the pool's sessions run READ COMMITTED).
        Ok(retry_transient!(self.0, |c| {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *c).await?;
            let mut tx = c.begin().await?;
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM products FOR UPDATE").fetch_one(&mut *tx).await?;
            if count > 0 {
                return Ok::<usize, sqlx::Error>(0);
            }
            let mut insert = QueryBuilder::new(
                "INSERT INTO products (name, description, price, stock, created_at, updated_at) ",
            );
            insert.push_values(products.iter().zip(&stocks), |mut b, (p, stock)| {
                b.push_bind(&p.name)
                    .push_bind(&p.description)
                    .push_bind(p.price)
                    .push_bind(*stock)
                    .push_bind(now)
                    .push_bind(now);
            });
            insert.build().execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(products.len())
        })?)
    }

    async fn negative_stock(&self) -> ServiceResult<Vec<i64>> {
        Ok(self
            .0
            .run(async |c| sqlx::query_scalar("SELECT id FROM products WHERE stock < 0").fetch_all(c).await)
            .await?)
    }
}

// ---------------------------------------------------------------------------------------- carts

/// One round trip to read a cart, one transaction to write it; the version column fences
/// writers in other processes.
pub struct Carts(pub MySqlDb);

/// What a cart write transaction found.
enum Saved {
    Version(i64),
    Stale,
}

fn hold_id(cart: &Cart) -> Option<String> {
    cart.checkout.map(|h| h.id.to_string())
}

fn checkout_hold(row: &MySqlRow) -> ServiceResult<Option<CheckoutHold>> {
    let id: Option<String> = row.try_get("checkout_id")?;
    let expires_at: Option<DateTime<Utc>> = row.try_get("checkout_expires_at")?;
    Ok(match (id, expires_at) {
        (Some(id), Some(expires_at)) => Some(CheckoutHold {
            id: id.parse().map_err(|e| ServiceError::Internal(format!("stored checkout id {id:?}: {e}")))?,
            expires_at,
        }),
        _ => None,
    })
}

/// The cart row's compare-and-set on its version, carrying the hold: part of every cart save, and
/// the whole of a hold-only one. `id = LAST_INSERT_ID(id)` hands the row's id back in the answer
/// (`last_insert_id`), so a save needs no query to find its lines' `cart_id`.
fn cart_row_update(cart: &Cart, now: DateTime<Utc>) -> sqlx::query::Query<'_, MySql, MySqlArguments> {
    sqlx::query(
        "UPDATE cart SET version = version + 1, checkout_id = ?, checkout_expires_at = ?, updated_at = ?, \
         id = LAST_INSERT_ID(id) WHERE username = ? AND version = ?",
    )
    .bind(hold_id(cart))
    .bind(cart.checkout.map(|h| h.expires_at))
    .bind(now)
    .bind(&cart.username)
    .bind(cart.version)
}

#[async_trait]
impl CartStore for Carts {
    async fn load(&self, username: &str) -> Result<Cart, StoreError> {
        let rows = self
            .0
            .run(async |c| {
                sqlx::query(
                    "SELECT c.version, c.checkout_id, c.checkout_expires_at, \
                    i.product_id, i.product_name, i.price, i.quantity \
             FROM cart c LEFT JOIN cart_items i ON i.cart_id = c.id WHERE c.username = ? ORDER BY i.id",
                )
                .bind(username)
                .fetch_all(c)
                .await
            })
            .await
            .map_err(store_err)?;
        let mut cart = Cart::empty(username);
        for row in rows {
            cart.version = row.try_get("version").map_err(store_err)?;
            cart.checkout = checkout_hold(&row).map_err(store_err)?;
            let Some(product_id) = row.try_get::<Option<i64>, _>("product_id").map_err(store_err)? else {
                continue;
            };
            cart.items.push(CartItem {
                product_id,
                product_name: row.try_get("product_name").map_err(store_err)?,
                price: row.try_get::<Decimal, _>("price").map_err(store_err)?,
                quantity: quantity(row.try_get("quantity").map_err(store_err)?).map_err(store_err)?,
            });
        }
        Ok(cart)
    }

    async fn save(&self, cart: &Cart, applied_order: Option<i64>) -> Result<i64, StoreError> {
        let now = crate::db::now();
        let saved = retry_transient!(self.0, |c| {
            let mut tx = c.begin().await?;
            let cart_id: i64 = if cart.version == 0 {
                let inserted = sqlx::query(
                    "INSERT INTO cart (username, version, checkout_id, checkout_expires_at, created_at, updated_at) \
                     VALUES (?, 1, ?, ?, ?, ?)",
                )
                .bind(&cart.username)
                .bind(hold_id(cart))
                .bind(cart.checkout.map(|h| h.expires_at))
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(done) => i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX),
                    Err(e) if is_unique_violation(&e) => return Ok(Saved::Stale),
                    Err(e) => return Err(e),
                }
            } else {
                let done = cart_row_update(cart, now).execute(&mut *tx).await?;
                if done.rows_affected() == 0 {
                    return Ok(Saved::Stale);
                }
                i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX)
            };
            sqlx::query("DELETE FROM cart_items WHERE cart_id = ?").bind(cart_id).execute(&mut *tx).await?;
            if !cart.items.is_empty() {
                let mut insert =
                    QueryBuilder::new("INSERT INTO cart_items (cart_id, product_id, product_name, price, quantity) ");
                insert.push_values(&cart.items, |mut b, i| {
                    b.push_bind(cart_id)
                        .push_bind(i.product_id)
                        .push_bind(&i.product_name)
                        .push_bind(i.price)
                        .push_bind(i64::from(i.quantity));
                });
                insert.build().execute(&mut *tx).await?;
            }
            if let Some(order_id) = applied_order {
                let applied =
                    sqlx::query("INSERT INTO cart_applied_orders (username, order_id, applied_at) VALUES (?, ?, ?)")
                        .bind(&cart.username)
                        .bind(order_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await;
                match applied {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => return Ok(Saved::Stale),
                    Err(e) => return Err(e),
                }
            }
            tx.commit().await?;
            Ok(Saved::Version(cart.version + 1))
        })
        .map_err(store_err)?;
        match saved {
            Saved::Version(v) => Ok(v),
            Saved::Stale => Err(super::stale_cart(cart)),
        }
    }

    async fn save_hold(&self, cart: &Cart) -> Result<i64, StoreError> {
        let now = crate::db::now();
        let done = retry_transient!(self.0, |c| { cart_row_update(cart, now).execute(&mut *c).await })
            .map_err(store_err)?;
        if done.rows_affected() == 0 {
            return Err(super::stale_cart(cart));
        }
        Ok(cart.version + 1)
    }

    async fn checkout_applied(&self, username: &str, order_id: i64) -> Result<bool, StoreError> {
        let found: Option<i64> = self
            .0
            .run(async |c| {
                sqlx::query_scalar(
                    "SELECT order_id FROM cart_applied_orders WHERE username = ? AND order_id = ?",
                )
                .bind(username)
                .bind(order_id)
                .fetch_optional(c)
                .await
            })
            .await
            .map_err(store_err)?;
        Ok(found.is_some())
    }
}

// ------------------------------------------------------------------------------------- payments

pub struct Payments(pub MySqlDb);

const PAYMENT_COLUMNS: &str =
    "id, order_id, user_id, amount, status, transaction_id, failure_reason, created_at";

fn payment(row: &MySqlRow) -> ServiceResult<Payment> {
    Ok(Payment {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        amount: row.try_get("amount")?,
        status: payment_status(row.try_get::<&str, _>("status")?)?,
        transaction_id: row.try_get("transaction_id")?,
        failure_reason: row.try_get("failure_reason")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl PaymentStore for Payments {
    async fn find_by_order(&self, order_id: i64) -> ServiceResult<Option<Payment>> {
        let row = self
            .0
            .run(async |c| {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = ?"
                )))
                .bind(order_id)
                .fetch_optional(c)
                .await
            })
            .await?;
        row.as_ref().map(payment).transpose()
    }

    async fn insert(&self, p: NewPayment<'_>) -> ServiceResult<Option<Payment>> {
        let inserted = retry_transient!(self.0, |c| {
            sqlx::query(
                "INSERT INTO payments (order_id, user_id, amount, status, transaction_id, failure_reason, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(p.order_id)
            .bind(p.user_id)
            .bind(p.amount)
            .bind(payment_status_str(p.status))
            .bind(p.transaction_id)
            .bind(p.failure_reason)
            .bind(p.created_at)
            .execute(&mut *c)
            .await
        });
        match inserted {
            Ok(done) => Ok(Some(Payment {
                id: id(done.last_insert_id())?,
                order_id: p.order_id,
                user_id: p.user_id.to_owned(),
                amount: p.amount,
                status: p.status,
                transaction_id: p.transaction_id.map(str::to_owned),
                failure_reason: p.failure_reason.map(str::to_owned),
                created_at: p.created_at,
            })),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn summaries(&self) -> ServiceResult<Vec<PaymentSummary>> {
        let rows: Vec<(i64, i64, String, Decimal)> = self
            .0
            .run(async |c| {
                sqlx::query_as("SELECT id, order_id, status, amount FROM payments").fetch_all(c).await
            })
            .await?;
        rows.into_iter()
            .map(|(id, order_id, status, amount)| {
                Ok(PaymentSummary { id, order_id, status: payment_status(&status)?, amount })
            })
            .collect()
    }
}

// --------------------------------------------------------------------------------------- orders

pub struct Orders(pub MySqlDb);

impl Orders {
    /// Orders (with their items) matching `filter`, newest first, in one query.
    async fn select(&self, filter: &str, binds: &[Bind<'_>]) -> Result<Vec<Order>, StoreError> {
        let sql = order_select_sql(filter);
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(*v),
            };
        }
        let rows = self.0.run(async |c| query.fetch_all(c).await).await.map_err(store_err)?;
        group_orders(&rows).map_err(store_err)
    }
}

fn group_orders(rows: &[MySqlRow]) -> ServiceResult<Vec<Order>> {
    let mut orders: Vec<Order> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        if orders.last().is_none_or(|o| o.id != id) {
            let status: &str = row.try_get("status")?;
            orders.push(Order {
                id,
                username: row.try_get("username")?,
                items: Vec::new(),
                total_amount: row.try_get("total_amount")?,
                status: status.parse().map_err(|e| ServiceError::Internal(format!("{e}")))?,
                payment_id: row.try_get("payment_id")?,
                failure_reason: row.try_get("failure_reason")?,
                idempotency_key: row.try_get("idempotency_key")?,
                created_at: row.try_get("created_at")?,
                version: row.try_get("version")?,
            });
        }
        if let (Some(order), Some(product_id)) =
            (orders.last_mut(), row.try_get::<Option<i64>, _>("product_id")?)
        {
            order.items.push(OrderItem {
                product_id,
                product_name: row.try_get("product_name")?,
                price: row.try_get("price")?,
                quantity: quantity(row.try_get("quantity")?)?,
            });
        }
    }
    Ok(orders)
}

#[async_trait]
impl OrderStore for Orders {
    async fn create(&self, new: NewOrder) -> Result<Order, StoreError> {
        let now = crate::db::now();
        let created = retry_transient!(self.0, |c| {
            let mut tx = c.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO orders (username, total_amount, status, idempotency_key, version, created_at, updated_at) \
                 VALUES (?, ?, 'PENDING', ?, 1, ?, ?)",
            )
            .bind(&new.username)
            .bind(new.total_amount)
            .bind(&new.idempotency_key)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await;
            let order_id = match inserted {
                Ok(done) => i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX),
                Err(e) if is_unique_violation(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            if !new.items.is_empty() {
                let mut insert =
                    QueryBuilder::new("INSERT INTO order_items (order_id, product_id, product_name, price, quantity) ");
                insert.push_values(&new.items, |mut b, i| {
                    b.push_bind(order_id)
                        .push_bind(i.product_id)
                        .push_bind(&i.product_name)
                        .push_bind(i.price)
                        .push_bind(i64::from(i.quantity));
                });
                insert.build().execute(&mut *tx).await?;
            }
            let order = Order::created(order_id, new.clone(), now);
            push_event(&mut tx, &OrderEvent::created(&order, new.checkout_id), now).await?;
            tx.commit().await?;
            Ok(Some(order_id))
        })
        .map_err(store_err)?;
        match created {
            Some(order_id) => Ok(Order::created(order_id, new, now)),
            None => Err(StoreError::Duplicate(format!("idempotency key of {} already used", new.username))),
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
        let now = crate::db::now();
        let updated = retry_transient!(self.0, |c| {
            let mut tx = c.begin().await?;
            let done = sqlx::query(
                "UPDATE orders SET status = ?, payment_id = ?, failure_reason = ?, version = version + 1, \
                 updated_at = ? WHERE id = ? AND version = ?",
            )
            .bind(order.status.as_str())
            .bind(order.payment_id)
            .bind(&order.failure_reason)
            .bind(now)
            .bind(order.id)
            .bind(order.version)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            if let Some(event) = event {
                push_event(&mut tx, event, now).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .map_err(store_err)?;
        if !updated {
            return Err(StoreError::Conflict(format!(
                "order {} changed since version {}",
                order.id, order.version
            )));
        }
        Ok(order.version + 1)
    }

    async fn list_for_user(&self, username: &str) -> Result<Vec<Order>, StoreError> {
        self.select("o.username = ?", &[Bind::Text(username)]).await
    }

    async fn unsent_events(&self, limit: usize) -> Result<Vec<OrderEvent>, StoreError> {
        let rows: Vec<String> = self
            .0
            .run(async |c| {
                sqlx::query_scalar(
                    "SELECT payload FROM order_outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?",
                )
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(c)
                .await
            })
            .await
            .map_err(store_err)?;
        rows.iter().map(|p| serde_json::from_str(p).map_err(store_err)).collect()
    }

    async fn mark_sent(&self, event_ids: &[Uuid]) -> Result<(), StoreError> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let now = crate::db::now();
        retry_transient!(self.0, |c| {
            let mut update = QueryBuilder::new("UPDATE order_outbox SET sent_at = ");
            update.push_bind(now).push(" WHERE event_id IN (");
            let mut ids = update.separated(", ");
            for id in event_ids {
                ids.push_bind(id.to_string());
            }
            update.push(")");
            update.build().execute(&mut *c).await
        })
        .map_err(store_err)?;
        Ok(())
    }
}

async fn push_event(
    conn: &mut sqlx::MySqlConnection,
    event: &OrderEvent,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO order_outbox (event_id, order_id, payload, created_at) VALUES (?, ?, ?, ?)")
        .bind(event.event_id.to_string())
        .bind(event.order_id)
        .bind(payload)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl OrderRepo for Orders {
    async fn summaries(&self) -> ServiceResult<Vec<OrderSummary>> {
        let rows: Vec<(i64, String, Option<i64>, Decimal)> = self
            .0
            .run(async |c| {
                sqlx::query_as("SELECT id, status, payment_id, total_amount FROM orders").fetch_all(c).await
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, status, payment_id, total_amount)| OrderSummary {
                id,
                status,
                payment_id,
                total_amount,
            })
            .collect())
    }
}
