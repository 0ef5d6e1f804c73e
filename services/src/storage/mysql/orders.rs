//! MySQL: Orders, their items and their outbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shop_actors::model::{NewOrder, Order, OrderEvent, OrderItem, OrderStatus};
use shop_actors::ports::{OrderStore, Page, StoreError};
use sqlx::Connection;
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row};
use uuid::Uuid;

use super::pool::MySqlDb;
use super::support::{quantity, store_err};
use crate::error::{ServiceError, ServiceResult};
use crate::history::OrderRows;
use crate::order::{OrderRepo, OrderSummary};
use crate::storage::common::{
    Bind, CLAIM_RECOVERY_SQL, CLAIM_RELAY_SQL, ORDER_EVENTS_SQL, ORDER_TIMES_SQL, OUTBOX_BACKLOG_SQL,
    OUTCOME_EVENTS_SQL, UNFINISHED_SQL, USER_PAGE_FILTER, checkout_id, is_unique_violation, order_select_sql,
    user_page_binds,
};

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
                checkout_id: checkout_id(row.try_get("checkout_id")?)?,
                unsettled: row.try_get("unsettled")?,
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
                "INSERT INTO orders (username, total_amount, status, idempotency_key, checkout_id, version, created_at, updated_at) \
                 VALUES (?, ?, 'PENDING', ?, ?, 1, ?, ?)",
            )
            .bind(&new.username)
            .bind(new.total_amount)
            .bind(&new.idempotency_key)
            .bind(new.checkout_id.map(|c| c.to_string()))
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
            let event = OrderEvent::created(&order, new.checkout_id).in_trace(new.traceparent.clone());
            push_event(&mut tx, &event, now).await?;
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
                "UPDATE orders SET status = ?, payment_id = ?, failure_reason = ?, unsettled = ?, \
                 shipped_at = COALESCE(shipped_at, ?), delivered_at = COALESCE(delivered_at, ?), \
                 version = version + 1, updated_at = ? WHERE id = ? AND version = ?",
            )
            .bind(order.status.as_str())
            .bind(&order.payment_id)
            .bind(&order.failure_reason)
            .bind(order.unsettled)
            .bind((order.status == OrderStatus::Shipped).then_some(now))
            .bind((order.status == OrderStatus::Delivered).then_some(now))
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

    async fn list_for_user(&self, username: &str, page: Page) -> Result<Vec<Order>, StoreError> {
        self.select(USER_PAGE_FILTER, &user_page_binds(username, page)).await
    }

    async fn unsent_events(&self, limit: usize) -> Result<Vec<OrderEvent>, StoreError> {
        let rows: Vec<(String, Option<String>)> = self
            .0
            .run(async |c| {
                sqlx::query_as(
                    "SELECT payload, traceparent FROM order_outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?",
                )
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(c)
                .await
            })
            .await
            .map_err(store_err)?;
        rows.into_iter()
            .map(|(payload, traceparent)| {
                serde_json::from_str::<OrderEvent>(&payload)
                    .map(|e| e.in_trace(traceparent))
                    .map_err(store_err)
            })
            .collect()
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

    async fn unfinished(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Order>, StoreError> {
        let ids: Vec<i64> = self
            .0
            .run(async |c| {
                sqlx::query_scalar(UNFINISHED_SQL)
                    .bind(before)
                    .bind(before)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(c)
                    .await
            })
            .await
            .map_err(store_err)?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.load(id).await?);
        }
        Ok(found)
    }

    async fn claim_recovery(
        &self,
        order_id: i64,
        owner: Uuid,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (owner, now) = (owner.to_string(), crate::time::now());
        let done = retry_transient!(self.0, |c| {
            sqlx::query(CLAIM_RECOVERY_SQL)
                .bind(&owner)
                .bind(until)
                .bind(order_id)
                .bind(now)
                .bind(&owner)
                .execute(&mut *c)
                .await
        })
        .map_err(store_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_relay(&self, owner: Uuid, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let (owner, now) = (owner.to_string(), crate::time::now());
        let done = retry_transient!(self.0, |c| {
            sqlx::query(CLAIM_RELAY_SQL)
                .bind(&owner)
                .bind(until)
                .bind(now)
                .bind(&owner)
                .execute(&mut *c)
                .await
        })
        .map_err(store_err)?;
        Ok(done.rows_affected() == 1)
    }
}

async fn push_event(
    conn: &mut sqlx::MySqlConnection,
    event: &OrderEvent,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO order_outbox (event_id, order_id, payload, created_at, traceparent) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(event.event_id.to_string())
    .bind(event.order_id)
    .bind(payload)
    .bind(now)
    .bind(&event.traceparent)
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl OrderRepo for Orders {
    async fn summaries(&self) -> ServiceResult<Vec<OrderSummary>> {
        type Row = (i64, String, Option<String>, Decimal, Option<String>, bool, DateTime<Utc>);
        let rows: Vec<Row> = self
            .0
            .run(async |c| {
                sqlx::query_as(
                    "SELECT id, status, payment_id, total_amount, checkout_id, unsettled, updated_at FROM orders",
                )
                .fetch_all(c)
                .await
            })
            .await?;
        rows.into_iter()
            .map(|(id, status, payment_id, total_amount, checkout, unsettled, updated_at)| {
                Ok(OrderSummary {
                    id,
                    status,
                    payment_id,
                    total_amount,
                    checkout_id: checkout_id(checkout)?,
                    unsettled,
                    updated_at,
                })
            })
            .collect()
    }

    async fn outcome_events(&self) -> ServiceResult<Vec<(i64, bool)>> {
        let rows: Vec<(i64, i64)> =
            self.0.run(async |c| sqlx::query_as(OUTCOME_EVENTS_SQL).fetch_all(c).await).await?;
        Ok(rows.into_iter().map(|(id, sent)| (id, sent == 1)).collect())
    }

    async fn history_rows(&self, order_id: i64) -> ServiceResult<Option<OrderRows>> {
        type Times = (DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
        type Event = (String, DateTime<Utc>, Option<DateTime<Utc>>);
        let (times, events): (Option<Times>, Vec<Event>) = self
            .0
            .run(async |c| {
                let times = sqlx::query_as(ORDER_TIMES_SQL).bind(order_id).fetch_optional(&mut *c).await?;
                let events = sqlx::query_as(ORDER_EVENTS_SQL).bind(order_id).fetch_all(&mut *c).await?;
                Ok((times, events))
            })
            .await?;
        let Some((created_at, shipped_at, delivered_at)) = times else { return Ok(None) };
        let events = events
            .into_iter()
            .map(|(payload, written, sent)| {
                let event: OrderEvent = serde_json::from_str(&payload)
                    .map_err(|e| ServiceError::Internal(format!("stored event of order {order_id}: {e}")))?;
                Ok((event, written, sent))
            })
            .collect::<ServiceResult<_>>()?;
        Ok(Some(OrderRows { created_at, shipped_at, delivered_at, events }))
    }

    async fn outbox_backlog(&self) -> ServiceResult<(u64, Option<DateTime<Utc>>)> {
        let (count, oldest): (i64, Option<DateTime<Utc>>) =
            self.0.run(async |c| sqlx::query_as(OUTBOX_BACKLOG_SQL).fetch_one(c).await).await?;
        Ok((u64::try_from(count).unwrap_or_default(), oldest))
    }
}
