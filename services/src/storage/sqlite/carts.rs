//! SQLite: Carts: one row per user, its items, and the orders already taken out of it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use shop_actors::model::{Cart, CartItem, CheckoutHold};
use shop_actors::ports::{CartStore, StoreError};

use super::codec::{money_at, parse_ts, quantity_at, store_err, time_at, ts};
use super::db::{SqliteDb, SqliteError, is_unique_violation};
use crate::storage::common::{money_text, stale_cart};

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

/// One transaction: the cart row (inserted, or its version's compare-and-set), then every line
/// (`lines: None`) or just those of the products named, and the applied order.
fn save_cart(
    c: &mut Connection,
    cart: &Cart,
    lines: Option<&[i64]>,
    applied_order: Option<i64>,
) -> Result<CartWrite, SqliteError> {
    let now = ts(crate::time::now());
    let hold = cart.checkout.map(|h| (h.id.to_string(), ts(h.expires_at)));
    let (hold_id, hold_expiry) = (hold.as_ref().map(|h| &h.0), hold.as_ref().map(|h| &h.1));
    let tx = c.savepoint()?;
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
    let items: Vec<&CartItem> = match lines {
        Some(products) if cart.version > 0 => {
            let mut delete =
                tx.prepare_cached("DELETE FROM cart_items WHERE cart_id = ? AND product_id = ?")?;
            for p in products.iter().filter(|p| !cart.items.iter().any(|i| i.product_id == **p)) {
                delete.execute(params![cart_id, p])?;
            }
            cart.items.iter().filter(|i| products.contains(&i.product_id)).collect()
        }
        // A cart row just made has no lines yet.
        _ if cart.version == 0 => cart.items.iter().collect(),
        _ => {
            tx.prepare_cached("DELETE FROM cart_items WHERE cart_id = ?")?.execute([cart_id])?;
            cart.items.iter().collect()
        }
    };
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO cart_items (cart_id, product_id, product_name, price, quantity, added_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cart_id, product_id) DO UPDATE SET \
             product_name = excluded.product_name, price = excluded.price, quantity = excluded.quantity, \
             added_at = excluded.added_at",
        )?;
        for i in items {
            insert.execute(params![
                cart_id,
                i.product_id,
                i.product_name,
                money_text(i.price),
                i64::from(i.quantity),
                ts(i.added_at)
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

impl Carts {
    async fn write(
        &self,
        cart: &Cart,
        lines: Option<Vec<i64>>,
        applied_order: Option<i64>,
    ) -> Result<i64, StoreError> {
        let (owned, version) = (cart.clone(), cart.version);
        let written = self.0.write.run(move |c| save_cart(c, &owned, lines.as_deref(), applied_order));
        match written.await.map_err(store_err)? {
            CartWrite::Saved => Ok(version + 1),
            CartWrite::Stale => Err(stale_cart(cart)),
        }
    }
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
                            i.product_id, i.product_name, i.price, i.quantity, \
                            COALESCE(i.added_at, c.updated_at) AS added_at \
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
                        added_at: time_at(row, "added_at")?,
                    });
                }
                Ok(cart)
            })
            .await
            .map_err(store_err)
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
        self.write(cart, Some(products.to_vec()), applied_order).await
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
                    ts(crate::time::now()),
                    username,
                    version
                ])?)
            })
            .await
            .map_err(store_err)?;
        if changed == 0 {
            return Err(stale_cart(cart));
        }
        Ok(version + 1)
    }

    async fn checkout_applied(
        &self,
        username: &str,
        order_id: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let username = username.to_owned();
        self.0
            .read
            .run(move |c| {
                let at: Option<String> = c
                    .prepare_cached(
                        "SELECT applied_at FROM cart_applied_orders WHERE username = ? AND order_id = ?",
                    )?
                    .query_row(params![username, order_id], |r| r.get(0))
                    .optional()?;
                at.as_deref().map(parse_ts).transpose()
            })
            .await
            .map_err(store_err)
    }
}
