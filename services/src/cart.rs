//! Cart: the caller's own cart, held by cart actors and stored in the cart database.

use async_trait::async_trait;
use chrono::Utc;
use rust_decimal::Decimal;
use serde::Serialize;
use shop_actors::Carts;
use shop_actors::model::{Cart, CartItem, MAX_LINE_QUANTITY};
use shop_actors::ports::{CartStore, StoreError};
use sqlx::{QueryBuilder, Row};

use crate::db::{SqliteDb, decimal, is_unique_violation, money_text};
use crate::error::{ServiceError, ServiceResult};
use crate::product::ProductService;

/// The carts of the cart database: one round trip to read a cart, one transaction to write it.
#[derive(Clone)]
pub struct SqliteCartStore {
    db: SqliteDb,
}

impl SqliteCartStore {
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }
}

fn store_err(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn svc_to_store(e: ServiceError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[async_trait]
impl CartStore for SqliteCartStore {
    async fn load(&self, username: &str) -> Result<Cart, StoreError> {
        let rows = sqlx::query(
            "SELECT c.version, i.product_id, i.product_name, i.price, i.quantity \
             FROM cart c LEFT JOIN cart_items i ON i.cart_id = c.id WHERE c.username = ? ORDER BY i.id",
        )
        .bind(username)
        .fetch_all(&self.db.read)
        .await
        .map_err(store_err)?;
        let mut cart = Cart::empty(username);
        for row in rows {
            cart.version = row.try_get("version").map_err(store_err)?;
            let Some(product_id) = row.try_get::<Option<i64>, _>("product_id").map_err(store_err)? else {
                continue;
            };
            let quantity: i64 = row.try_get("quantity").map_err(store_err)?;
            cart.items.push(CartItem {
                product_id,
                product_name: row.try_get("product_name").map_err(store_err)?,
                price: decimal(row.try_get::<&str, _>("price").map_err(store_err)?).map_err(svc_to_store)?,
                quantity: u32::try_from(quantity)
                    .map_err(|_| StoreError::Unavailable(format!("stored quantity {quantity}")))?,
            });
        }
        Ok(cart)
    }

    async fn save(&self, cart: &Cart, applied_order: Option<i64>) -> Result<i64, StoreError> {
        let stale = || {
            StoreError::Conflict(format!("cart of {} changed since version {}", cart.username, cart.version))
        };
        let now = Utc::now();
        let mut tx = self.db.write.begin().await.map_err(store_err)?;
        let cart_id: Option<i64> = if cart.version == 0 {
            match sqlx::query_scalar(
                "INSERT INTO cart (username, version, created_at, updated_at) VALUES (?, 1, ?, ?) RETURNING id",
            )
            .bind(&cart.username)
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            {
                Ok(id) => Some(id),
                Err(e) if is_unique_violation(&e) => None,
                Err(e) => return Err(store_err(e)),
            }
        } else {
            sqlx::query_scalar(
                "UPDATE cart SET version = version + 1, updated_at = ? WHERE username = ? AND version = ? RETURNING id",
            )
            .bind(now)
            .bind(&cart.username)
            .bind(cart.version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_err)?
        };
        let cart_id = cart_id.ok_or_else(stale)?;
        sqlx::query("DELETE FROM cart_items WHERE cart_id = ?")
            .bind(cart_id)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
        if !cart.items.is_empty() {
            let mut insert = QueryBuilder::new(
                "INSERT INTO cart_items (cart_id, product_id, product_name, price, quantity) ",
            );
            insert.push_values(&cart.items, |mut b, i| {
                b.push_bind(cart_id)
                    .push_bind(i.product_id)
                    .push_bind(&i.product_name)
                    .push_bind(money_text(i.price))
                    .push_bind(i64::from(i.quantity));
            });
            insert.build().execute(&mut *tx).await.map_err(store_err)?;
        }
        if let Some(order_id) = applied_order {
            let applied = sqlx::query(
                "INSERT INTO cart_applied_orders (username, order_id, applied_at) VALUES (?, ?, ?)",
            )
            .bind(&cart.username)
            .bind(order_id)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match applied {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(stale()),
                Err(e) => return Err(store_err(e)),
            }
        }
        tx.commit().await.map_err(store_err)?;
        Ok(cart.version + 1)
    }

    async fn checkout_applied(&self, username: &str, order_id: i64) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT order_id FROM cart_applied_orders WHERE username = ? AND order_id = ?",
        )
        .bind(username)
        .bind(order_id)
        .fetch_optional(&self.db.read)
        .await
        .map_err(store_err)?;
        Ok(found.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItemView {
    pub product_id: i64,
    pub product_name: String,
    pub price: Decimal,
    pub quantity: u32,
    pub subtotal: Decimal,
}

/// A cart as the REST contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CartView {
    pub username: String,
    pub items: Vec<CartItemView>,
    pub total_amount: Decimal,
}

fn two_places(mut d: Decimal) -> Decimal {
    d.rescale(2);
    d
}

impl From<Cart> for CartView {
    fn from(cart: Cart) -> Self {
        Self {
            total_amount: two_places(cart.total()),
            items: cart
                .items
                .iter()
                .map(|i| CartItemView {
                    product_id: i.product_id,
                    product_name: i.product_name.clone(),
                    price: two_places(i.price),
                    quantity: i.quantity,
                    subtotal: two_places(i.subtotal()),
                })
                .collect(),
            username: cart.username,
        }
    }
}

/// The Cart service: checks requests against the catalog, then hands them to the cart actors.
#[derive(Clone)]
pub struct CartService {
    carts: Carts,
    products: ProductService,
}

fn quantity(q: i64, allow_zero: bool) -> ServiceResult<u32> {
    let min = if allow_zero { 0 } else { 1 };
    match u32::try_from(q) {
        Ok(v) if v >= min && v <= MAX_LINE_QUANTITY => Ok(v),
        _ => Err(ServiceError::Invalid(format!(
            "quantity must be between {min} and {MAX_LINE_QUANTITY} (got {q})"
        ))),
    }
}

impl CartService {
    pub fn new(carts: Carts, products: ProductService) -> Self {
        Self { carts, products }
    }

    pub fn carts(&self) -> &Carts {
        &self.carts
    }

    pub async fn get(&self, username: &str) -> ServiceResult<CartView> {
        Ok(self.carts.get(username).await?.into())
    }

    pub async fn add(&self, username: &str, product_id: i64, qty: i64) -> ServiceResult<CartView> {
        let qty = quantity(qty, false)?;
        let product = self.products.get(product_id).await?;
        if i64::from(qty) > product.stock {
            return Err(ServiceError::Conflict(format!(
                "only {} of product {product_id} in stock (asked for {qty})",
                product.stock
            )));
        }
        Ok(self.carts.add(username, product.snapshot(), qty).await?.into())
    }

    pub async fn set_quantity(&self, username: &str, product_id: i64, qty: i64) -> ServiceResult<CartView> {
        let qty = quantity(qty, true)?;
        Ok(self.carts.set_quantity(username, product_id, qty).await?.into())
    }

    pub async fn remove(&self, username: &str, product_id: i64) -> ServiceResult<CartView> {
        Ok(self.carts.remove(username, product_id).await?.into())
    }

    pub async fn clear(&self, username: &str) -> ServiceResult<()> {
        self.carts.clear(username).await?;
        Ok(())
    }
}
