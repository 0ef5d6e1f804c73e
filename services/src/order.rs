//! Order: the order database, and placing orders through the checkout saga.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shop_actors::model::{NewOrder, Order, OrderItem, OrderStatus};
use shop_actors::ports::{OrderStore, StoreError};
use shop_actors::{Checkouts, Orders};
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row};

use crate::db::{SqliteDb, decimal, is_unique_violation, money_text};
use crate::error::{ServiceError, ServiceResult};

#[derive(Clone)]
pub struct SqliteOrderStore {
    db: SqliteDb,
}

impl SqliteOrderStore {
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }

    /// Orders (with their items) matching `filter`, in one query.
    async fn select(&self, filter: &str, binds: &[Bind<'_>]) -> Result<Vec<Order>, StoreError> {
        let sql = format!(
            "SELECT o.id, o.username, o.total_amount, o.status, o.payment_id, o.failure_reason, \
                    o.idempotency_key, o.version, o.created_at, \
                    i.product_id, i.product_name, i.price, i.quantity \
             FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
             WHERE {filter} ORDER BY o.id DESC, i.id"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(*v),
            };
        }
        let rows = query.fetch_all(&self.db.read).await.map_err(store_err)?;
        group(&rows).map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

fn store_err(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn group(rows: &[SqliteRow]) -> ServiceResult<Vec<Order>> {
    let mut orders: Vec<Order> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        if orders.last().is_none_or(|o| o.id != id) {
            let status: &str = row.try_get("status")?;
            orders.push(Order {
                id,
                username: row.try_get("username")?,
                items: Vec::new(),
                total_amount: decimal(row.try_get::<&str, _>("total_amount")?)?,
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
            let quantity: i64 = row.try_get("quantity")?;
            order.items.push(OrderItem {
                product_id,
                product_name: row.try_get("product_name")?,
                price: decimal(row.try_get::<&str, _>("price")?)?,
                quantity: u32::try_from(quantity)
                    .map_err(|_| ServiceError::Internal(format!("stored quantity {quantity}")))?,
            });
        }
    }
    Ok(orders)
}

#[async_trait]
impl OrderStore for SqliteOrderStore {
    async fn create(&self, new: NewOrder) -> Result<Order, StoreError> {
        let now = Utc::now();
        let mut tx = self.db.write.begin().await.map_err(store_err)?;
        let inserted = sqlx::query_scalar(
            "INSERT INTO orders (username, total_amount, status, idempotency_key, version, created_at, updated_at) \
             VALUES (?, ?, 'PENDING', ?, 1, ?, ?) RETURNING id",
        )
        .bind(&new.username)
        .bind(money_text(new.total_amount))
        .bind(&new.idempotency_key)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Duplicate(format!(
                    "idempotency key of {} already used",
                    new.username
                )));
            }
            Err(e) => return Err(store_err(e)),
        };
        if !new.items.is_empty() {
            let mut insert = QueryBuilder::new(
                "INSERT INTO order_items (order_id, product_id, product_name, price, quantity) ",
            );
            insert.push_values(&new.items, |mut b, i| {
                b.push_bind(id)
                    .push_bind(i.product_id)
                    .push_bind(&i.product_name)
                    .push_bind(money_text(i.price))
                    .push_bind(i64::from(i.quantity));
            });
            insert.build().execute(&mut *tx).await.map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)?;
        Ok(Order {
            id,
            username: new.username,
            items: new.items,
            total_amount: new.total_amount,
            status: OrderStatus::Pending,
            payment_id: None,
            failure_reason: None,
            idempotency_key: new.idempotency_key,
            created_at: now,
            version: 1,
        })
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

    async fn update(&self, order: &Order) -> Result<i64, StoreError> {
        let done = sqlx::query(
            "UPDATE orders SET status = ?, payment_id = ?, failure_reason = ?, version = version + 1, updated_at = ? \
             WHERE id = ? AND version = ?",
        )
        .bind(order.status.as_str())
        .bind(order.payment_id)
        .bind(&order.failure_reason)
        .bind(Utc::now())
        .bind(order.id)
        .bind(order.version)
        .execute(&self.db.write)
        .await
        .map_err(store_err)?;
        if done.rows_affected() == 0 {
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemView {
    pub product_id: i64,
    pub product_name: String,
    pub price: Decimal,
    pub quantity: u32,
}

/// An order as the REST contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: i64,
    pub username: String,
    pub total_amount: Decimal,
    pub status: OrderStatus,
    pub payment_id: Option<i64>,
    pub failure_reason: Option<String>,
    pub items: Vec<OrderItemView>,
    pub created_at: DateTime<Utc>,
}

fn two_places(mut d: Decimal) -> Decimal {
    d.rescale(2);
    d
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        Self {
            id: o.id,
            username: o.username,
            total_amount: two_places(o.total_amount),
            status: o.status,
            payment_id: o.payment_id,
            failure_reason: o.failure_reason,
            items: o
                .items
                .into_iter()
                .map(|i| OrderItemView {
                    product_id: i.product_id,
                    product_name: i.product_name,
                    price: two_places(i.price),
                    quantity: i.quantity,
                })
                .collect(),
            created_at: o.created_at,
        }
    }
}

/// The Order service: places orders through the saga and shows each user their own.
#[derive(Clone)]
pub struct OrderService {
    orders: Orders,
    checkouts: Checkouts,
}

impl OrderService {
    pub fn new(orders: Orders, checkouts: Checkouts) -> Self {
        Self { orders, checkouts }
    }

    pub fn checkouts(&self) -> &Checkouts {
        &self.checkouts
    }

    /// Runs the checkout saga for the user's cart. With an idempotency key, the same key returns
    /// the same order and never pays twice.
    pub async fn place(&self, username: &str, idempotency_key: Option<String>) -> ServiceResult<OrderView> {
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > 100 || !key.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(ServiceError::Invalid(
                "Idempotency-Key must be 1 to 100 visible ASCII characters".into(),
            ));
        }
        Ok(self.checkouts.checkout(username, idempotency_key).await?.into())
    }

    pub async fn list(&self, username: &str) -> ServiceResult<Vec<OrderView>> {
        Ok(self.orders.list_for_user(username).await?.into_iter().map(OrderView::from).collect())
    }

    /// The order, if it is the user's; another user's order is "not found", not "forbidden",
    /// so that order ids cannot be probed.
    pub async fn get(&self, username: &str, id: i64) -> ServiceResult<OrderView> {
        let order = self.orders.get(id).await?;
        if order.username != username {
            return Err(ServiceError::NotFound(format!("order {id} not found")));
        }
        Ok(order.into())
    }

    /// Fulfilment (ADMIN): PAID → SHIPPED → DELIVERED, nothing else.
    pub async fn set_status(&self, id: i64, status: &str) -> ServiceResult<OrderView> {
        let to: OrderStatus = status.parse().map_err(|_| {
            ServiceError::Invalid(format!(
                "status must be one of PENDING, PAID, CANCELLED, SHIPPED, DELIVERED (got {status:?})"
            ))
        })?;
        if !matches!(to, OrderStatus::Shipped | OrderStatus::Delivered) {
            let current = self.orders.get(id).await?;
            return Err(ServiceError::Conflict(format!(
                "order {id} is {} and cannot be set to {to}: only PAID → SHIPPED → DELIVERED",
                current.status
            )));
        }
        Ok(self.orders.transition(id, to, None, None).await?.into())
    }
}
