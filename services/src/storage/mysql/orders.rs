//! MySQL: Orders, their items and their outbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shop_actors::model::{NewOrder, Order, OrderEvent, OrderItem};
use shop_actors::ports::{OrderStore, StoreError};
use sqlx::Connection;
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row};
use uuid::Uuid;

use super::pool::MySqlDb;
use super::support::{quantity, store_err};
use crate::error::{ServiceError, ServiceResult};
use crate::order::{OrderRepo, OrderSummary};
use crate::storage::common::{Bind, is_unique_violation, order_select_sql};

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
        let now = crate::time::now();
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
        let now = crate::time::now();
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
        let now = crate::time::now();
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
