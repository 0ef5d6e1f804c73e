//! SQLite: Orders, their items and their outbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use shop_actors::model::{NewOrder, Order, OrderEvent, OrderItem, OrderStatus};
use shop_actors::ports::{OrderStore, Page, StoreError};
use uuid::Uuid;

use super::codec::{decode, money_at, parse_ts, quantity_at, rows, store_err, time_at, ts};
use super::db::{SqliteDb, SqliteError, is_unique_violation};
use crate::error::ServiceResult;
use crate::history::OrderRows;
use crate::order::{OrderRepo, OrderSummary};
use crate::storage::common::{
    Bind, CLAIM_RECOVERY_SQL, CLAIM_RELAY_SQL, ORDER_EVENTS_SQL, ORDER_TIMES_SQL, OUTBOX_BACKLOG_SQL,
    OUTCOME_EVENTS_SQL, UNFINISHED_SQL, USER_PAGE_FILTER, checkout_id, money_text, order_select_sql,
    user_page_binds,
};

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
                checkout_id: checkout_id(row.get("checkout_id")?).map_err(decode)?,
                unsettled: row.get("unsettled")?,
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
        "INSERT INTO order_outbox (event_id, order_id, payload, created_at, traceparent) VALUES (?, ?, ?, ?, ?)",
    )?
    .execute(params![event.event_id.to_string(), event.order_id, payload, now, event.traceparent])?;
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
                let now = crate::time::now();
                let at = ts(now);
                let tx = c.savepoint()?;
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO orders (username, total_amount, status, idempotency_key, checkout_id, version, created_at, updated_at) \
                         VALUES (?, ?, 'PENDING', ?, ?, 1, ?, ?) RETURNING id",
                    )?
                    .query_row(
                        params![
                            new.username,
                            money_text(new.total_amount),
                            new.idempotency_key,
                            new.checkout_id.map(|c| c.to_string()),
                            at,
                            at
                        ],
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
                let (checkout_id, traceparent) = (new.checkout_id, new.traceparent.clone());
                let order = Order::created(id, new, now);
                push_event(&tx, &OrderEvent::created(&order, checkout_id).in_trace(traceparent), &at)?;
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
                let now = ts(crate::time::now());
                let tx = c.savepoint()?;
                let changed = tx
                    .prepare_cached(
                        "UPDATE orders SET status = ?, payment_id = ?, failure_reason = ?, unsettled = ?, \
                         shipped_at = COALESCE(shipped_at, ?), delivered_at = COALESCE(delivered_at, ?), \
                         version = version + 1, updated_at = ? WHERE id = ? AND version = ?",
                    )?
                    .execute(params![
                        o.status.as_str(),
                        o.payment_id,
                        o.failure_reason,
                        o.unsettled,
                        (o.status == OrderStatus::Shipped).then_some(&now),
                        (o.status == OrderStatus::Delivered).then_some(&now),
                        now,
                        o.id,
                        o.version
                    ])?;
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

    async fn list_for_user(&self, username: &str, page: Page) -> Result<Vec<Order>, StoreError> {
        self.select(USER_PAGE_FILTER, &user_page_binds(username, page)).await
    }

    async fn unsent_events(&self, limit: usize) -> Result<Vec<OrderEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.0
            .read
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT payload, traceparent FROM order_outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?",
                )?;
                let mut rows = stmt.query([limit])?;
                let mut events = Vec::new();
                while let Some(row) = rows.next()? {
                    let event: OrderEvent =
                        serde_json::from_str(&row.get::<_, String>(0)?).map_err(decode)?;
                    events.push(event.in_trace(row.get(1)?));
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
                let now = ts(crate::time::now());
                let tx = c.savepoint()?;
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

    async fn unfinished(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Order>, StoreError> {
        let (before, limit) = (ts(before), i64::try_from(limit).unwrap_or(i64::MAX));
        let ids: Vec<i64> = self
            .0
            .read
            .run(move |c| {
                rows(c, UNFINISHED_SQL, params![before, before, limit], |r| Ok(r.get::<_, i64>(0)?))
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
        let (owner, until, now) = (owner.to_string(), ts(until), ts(crate::time::now()));
        self.0
            .write
            .run(move |c| {
                let changed = c
                    .prepare_cached(CLAIM_RECOVERY_SQL)?
                    .execute(params![owner, until, order_id, now, owner])?;
                Ok(changed == 1)
            })
            .await
            .map_err(store_err)
    }

    async fn claim_relay(&self, owner: Uuid, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let (owner, until, now) = (owner.to_string(), ts(until), ts(crate::time::now()));
        self.0
            .write
            .run(move |c| {
                let changed =
                    c.prepare_cached(CLAIM_RELAY_SQL)?.execute(params![owner, until, now, owner])?;
                Ok(changed == 1)
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
                rows(c, "SELECT id, status, payment_id, total_amount, checkout_id, unsettled, updated_at FROM orders", [], |r| {
                    Ok(OrderSummary {
                        id: r.get("id")?,
                        status: r.get("status")?,
                        payment_id: r.get("payment_id")?,
                        total_amount: money_at(r, "total_amount")?,
                        checkout_id: checkout_id(r.get("checkout_id")?).map_err(decode)?,
                        unsettled: r.get("unsettled")?,
                        updated_at: time_at(r, "updated_at")?,
                    })
                })
            })
            .await?)
    }

    async fn outcome_events(&self) -> ServiceResult<Vec<(i64, bool)>> {
        Ok(self
            .0
            .read
            .run(|c| rows(c, OUTCOME_EVENTS_SQL, [], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? == 1))))
            .await?)
    }

    async fn history_rows(&self, order_id: i64) -> ServiceResult<Option<OrderRows>> {
        let time = |t: Option<String>| t.as_deref().map(parse_ts).transpose();
        Ok(self
            .0
            .read
            .run(move |c| {
                let times = rows(c, ORDER_TIMES_SQL, [order_id], |r| {
                    Ok((time_at(r, "created_at")?, time(r.get(1)?)?, time(r.get(2)?)?))
                })?;
                let Some((created_at, shipped_at, delivered_at)) = times.into_iter().next() else {
                    return Ok(None);
                };
                let events = rows(c, ORDER_EVENTS_SQL, [order_id], |r| {
                    let event: OrderEvent = serde_json::from_str(&r.get::<_, String>(0)?).map_err(decode)?;
                    Ok((event, time_at(r, "created_at")?, time(r.get(2)?)?))
                })?;
                Ok(Some(OrderRows { created_at, shipped_at, delivered_at, events }))
            })
            .await?)
    }

    async fn outbox_backlog(&self) -> ServiceResult<(u64, Option<DateTime<Utc>>)> {
        Ok(self
            .0
            .read
            .run(|c| {
                let (count, oldest): (i64, Option<String>) =
                    c.prepare_cached(OUTBOX_BACKLOG_SQL)?.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok((u64::try_from(count).unwrap_or_default(), oldest.as_deref().map(parse_ts).transpose()?))
            })
            .await?)
    }
}
