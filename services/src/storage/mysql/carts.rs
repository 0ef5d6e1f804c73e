//! MySQL: Carts: one row per user, its items, and the orders already taken out of it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shop_actors::model::{Cart, CartItem, CheckoutHold};
use shop_actors::ports::{CartStore, StoreError};
use sqlx::Connection;
use sqlx::mysql::{MySql, MySqlArguments, MySqlRow};
use sqlx::{QueryBuilder, Row};

use super::pool::MySqlDb;
use super::support::{quantity, store_err};
use crate::error::{ServiceError, ServiceResult};
use crate::storage::common::{is_unique_violation, stale_cart};

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
                    i.product_id, i.product_name, i.price, i.quantity, \
                    COALESCE(i.added_at, c.updated_at) AS added_at \
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
                added_at: row.try_get("added_at").map_err(store_err)?,
            });
        }
        Ok(cart)
    }

    async fn save(&self, cart: &Cart, applied_order: Option<i64>) -> Result<i64, StoreError> {
        self.write(cart, None, applied_order).await
    }

    async fn save_lines(
        &self,
        cart: &Cart,
        products: &[i64],
        applied_order: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.write(cart, Some(products), applied_order).await
    }

    async fn save_hold(&self, cart: &Cart) -> Result<i64, StoreError> {
        let now = crate::time::now();
        let done = retry_transient!(self.0, |c| { cart_row_update(cart, now).execute(&mut *c).await })
            .map_err(store_err)?;
        if done.rows_affected() == 0 {
            return Err(stale_cart(cart));
        }
        Ok(cart.version + 1)
    }

    async fn checkout_applied(
        &self,
        username: &str,
        order_id: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.0
            .run(async |c| {
                sqlx::query_scalar(
                    "SELECT applied_at FROM cart_applied_orders WHERE username = ? AND order_id = ?",
                )
                .bind(username)
                .bind(order_id)
                .fetch_optional(c)
                .await
            })
            .await
            .map_err(store_err)
    }
}

impl Carts {
    /// One transaction: the cart row (inserted, or its version's compare-and-set), then every
    /// line (`lines: None`) or just those of the products named, and the applied order.
    async fn write(
        &self,
        cart: &Cart,
        lines: Option<&[i64]>,
        applied_order: Option<i64>,
    ) -> Result<i64, StoreError> {
        let now = crate::time::now();
        // What the transaction writes, worked out before it (and its retries) start.
        let every: Vec<&CartItem> = cart.items.iter().collect();
        let lines: Option<(Vec<&CartItem>, Vec<i64>)> = lines.filter(|_| cart.version > 0).map(|products| {
            let kept = cart.items.iter().filter(|i| products.contains(&i.product_id)).collect();
            let gone =
                products.iter().copied().filter(|p| !cart.items.iter().any(|i| i.product_id == *p)).collect();
            (kept, gone)
        });
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
            match &lines {
                Some((kept, gone)) => {
                    insert_lines(&mut tx, cart_id, kept, true).await?;
                    delete_lines(&mut tx, cart_id, gone).await?;
                }
                // A cart row just made has no lines yet.
                None if cart.version == 0 => insert_lines(&mut tx, cart_id, &every, false).await?,
                None => {
                    sqlx::query("DELETE FROM cart_items WHERE cart_id = ?").bind(cart_id).execute(&mut *tx).await?;
                    insert_lines(&mut tx, cart_id, &every, false).await?;
                }
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
            Saved::Stale => Err(stale_cart(cart)),
        }
    }
}

/// The lines of these products deleted (none: no statement).
async fn delete_lines(
    tx: &mut sqlx::MySqlConnection,
    cart_id: i64,
    products: &[i64],
) -> Result<(), sqlx::Error> {
    if products.is_empty() {
        return Ok(());
    }
    let mut delete = QueryBuilder::new("DELETE FROM cart_items WHERE cart_id = ");
    delete.push_bind(cart_id).push(" AND product_id IN (");
    let mut ids = delete.separated(", ");
    for id in products {
        ids.push_bind(*id);
    }
    delete.push(")");
    delete.build().execute(&mut *tx).await?;
    Ok(())
}

/// One multi-row INSERT of `items` (none: no statement); with `upsert`, a line already there
/// takes the new values.
async fn insert_lines(
    tx: &mut sqlx::MySqlConnection,
    cart_id: i64,
    items: &[&CartItem],
    upsert: bool,
) -> Result<(), sqlx::Error> {
    if items.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::new(
        "INSERT INTO cart_items (cart_id, product_id, product_name, price, quantity, added_at) ",
    );
    insert.push_values(items, |mut b, i| {
        b.push_bind(cart_id)
            .push_bind(i.product_id)
            .push_bind(&i.product_name)
            .push_bind(i.price)
            .push_bind(i64::from(i.quantity))
            .push_bind(i.added_at);
    });
    if upsert {
        insert.push(
            " ON DUPLICATE KEY UPDATE product_name = VALUES(product_name), price = VALUES(price), \
             quantity = VALUES(quantity), added_at = VALUES(added_at)",
        );
    }
    insert.build().execute(&mut *tx).await?;
    Ok(())
}
