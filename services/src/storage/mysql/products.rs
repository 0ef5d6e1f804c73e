//! MySQL: Products: the catalog.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Connection;
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row};

use shop_actors::model::LineQuantity;
use shop_actors::ports::{Page, Shortage};
use uuid::Uuid;

use super::pool::MySqlDb;
use super::support::id;
use crate::error::{ServiceError, ServiceResult};
use crate::history::ReservationLine;
use crate::product::{Product, ProductInput, ProductStore, Refusal, ReservationSummary, StockLedger};
use crate::storage::common::is_unique_violation;
use crate::storage::common::{
    END_RESERVATION_SQL, EXPIRED_RESERVATIONS_SQL, PRODUCT_UPDATE_SQL, RESERVATION_LINES_SQL,
    RESERVATIONS_SQL, RETURN_STOCK_SQL, SHORTAGE_SQL, STOCK_LEDGER_SQL, TAKE_STOCK_SQL,
};

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
    async fn list(&self, page: Page) -> ServiceResult<Vec<Product>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id > ? ORDER BY id LIMIT ?");
        let rows = self
            .0
            .run(async |c| {
                sqlx::query(AssertSqlSafe(sql))
                    .bind(page.after.unwrap_or(i64::MIN))
                    .bind(i64::from(page.limit))
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
                "INSERT INTO products (name, description, price, stock, units_stocked, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&p.name)
            .bind(&p.description)
            .bind(p.price)
            .bind(stock)
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
            sqlx::query(PRODUCT_UPDATE_SQL)
                .bind(stock)
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
                "INSERT INTO products (name, description, price, stock, units_stocked, created_at, updated_at) ",
            );
            insert.push_values(products.iter().zip(&stocks), |mut b, (p, stock)| {
                b.push_bind(&p.name)
                    .push_bind(&p.description)
                    .push_bind(p.price)
                    .push_bind(*stock)
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

    async fn reserve(
        &self,
        checkout_id: Uuid,
        lines: &[LineQuantity],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ServiceResult<Result<(), Refusal>> {
        let key = checkout_id.to_string();
        Ok(retry_transient!(self.0, |c| {
            let mut tx = c.begin().await?;
            // The lines first: a checkout reserved already meets its own rows (the primary key
            // is the checkout and the product), and only then is its reservation read.
            let mut insert = QueryBuilder::new(
                "INSERT INTO stock_reservations (checkout_id, product_id, quantity, status, expires_at, created_at, updated_at) ",
            );
            insert.push_values(lines, |mut b, line| {
                b.push_bind(&key)
                    .push_bind(line.product_id)
                    .push_bind(line.quantity)
                    .push_bind("RESERVED")
                    .push_bind(expires_at)
                    .push_bind(now)
                    .push_bind(now);
            });
            match insert.build().execute(&mut *tx).await {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    drop(tx);
                    // Released (by its TTL or a release), it cannot be made again under the
                    // same checkout: the conflict is the answer, as it always was.
                    return if held_already(c, &key).await? { Ok(Ok(())) } else { Err(e) };
                }
                Err(e) => return Err(e),
            }
            // Lines come in product order: concurrent reservations lock rows in one order.
            for line in lines {
                let taken = sqlx::query(TAKE_STOCK_SQL)
                    .bind(line.quantity)
                    .bind(line.product_id)
                    .bind(line.quantity)
                    .execute(&mut *tx)
                    .await?;
                if taken.rows_affected() == 0 {
                    let found: Option<(String, i32)> =
                        sqlx::query_as(SHORTAGE_SQL).bind(line.product_id).fetch_optional(&mut *tx).await?;
                    // Dropping the transaction rolls back what this reservation took so far.
                    return Ok(Err(match found {
                        None => Refusal::UnknownProduct(line.product_id),
                        Some((product_name, stock)) => Refusal::Insufficient(Shortage {
                            product_id: line.product_id,
                            product_name,
                            requested: line.quantity,
                            available: u32::try_from(stock).unwrap_or(0),
                        }),
                    }));
                }
            }
            tx.commit().await?;
            Ok(Ok(()))
        })?)
    }

    async fn commit_reservation(
        &self,
        checkout_id: Uuid,
        now: DateTime<Utc>,
    ) -> ServiceResult<Result<(), Shortage>> {
        let key = checkout_id.to_string();
        Ok(retry_transient!(self.0, |c| {
            // The usual case is one statement, sent on its own (no BEGIN and COMMIT around it:
            // two round trips fewer). A reservation's lines are released together (by the TTL or
            // a release), so held lines committed means none had lapsed: nothing more to do.
            let ended = sqlx::query(END_RESERVATION_SQL)
                .bind("COMMITTED")
                .bind(now)
                .bind(&key)
                .execute(&mut *c)
                .await?;
            if ended.rows_affected() > 0 {
                return Ok(Ok(()));
            }
            // No line was held, and none can be again (a released checkout cannot reserve anew):
            // committed before (a redelivered event), or lapsed. Lines the TTL released before the
            // order was paid are taken again if the stock is still there.
            let mut tx = c.begin().await?;
            let lapsed: Vec<(i64, i32)> = sqlx::query_as(
                "SELECT product_id, quantity FROM stock_reservations \
                 WHERE checkout_id = ? AND status = 'RELEASED' ORDER BY product_id FOR UPDATE",
            )
            .bind(&key)
            .fetch_all(&mut *tx)
            .await?;
            for (product_id, quantity) in lapsed {
                let taken = sqlx::query(TAKE_STOCK_SQL)
                    .bind(quantity)
                    .bind(product_id)
                    .bind(quantity)
                    .execute(&mut *tx)
                    .await?;
                if taken.rows_affected() == 0 {
                    let (product_name, stock): (String, i32) = sqlx::query_as(SHORTAGE_SQL)
                        .bind(product_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .unwrap_or_else(|| (format!("product {product_id}"), 0));
                    tx.commit().await?;
                    return Ok(Err(Shortage {
                        product_id,
                        product_name,
                        requested: u32::try_from(quantity).unwrap_or(0),
                        available: u32::try_from(stock).unwrap_or(0),
                    }));
                }
                sqlx::query(
                    "UPDATE stock_reservations SET status = 'COMMITTED', updated_at = ? \
                     WHERE checkout_id = ? AND product_id = ?",
                )
                .bind(now)
                .bind(&key)
                .bind(product_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Ok(()))
        })?)
    }

    async fn release_reservation(&self, checkout_id: Uuid, now: DateTime<Utc>) -> ServiceResult<usize> {
        let key = checkout_id.to_string();
        Ok(retry_transient!(self.0, |c| {
            let mut tx = c.begin().await?;
            let held: Vec<(i64, i32)> = sqlx::query_as(
                "SELECT product_id, quantity FROM stock_reservations \
                 WHERE checkout_id = ? AND status = 'RESERVED' ORDER BY product_id FOR UPDATE",
            )
            .bind(&key)
            .fetch_all(&mut *tx)
            .await?;
            if held.is_empty() {
                return Ok(0);
            }
            sqlx::query(END_RESERVATION_SQL).bind("RELEASED").bind(now).bind(&key).execute(&mut *tx).await?;
            for (product_id, quantity) in &held {
                sqlx::query(RETURN_STOCK_SQL).bind(quantity).bind(product_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(held.len())
        })?)
    }

    async fn expired_reservations(&self, now: DateTime<Utc>, limit: usize) -> ServiceResult<Vec<Uuid>> {
        let ids: Vec<String> = self
            .0
            .run(async |c| {
                sqlx::query_scalar(EXPIRED_RESERVATIONS_SQL)
                    .bind(now)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(c)
                    .await
            })
            .await?;
        ids.iter().map(|id| parse_checkout(id)).collect()
    }

    async fn stock_ledger(&self) -> ServiceResult<Vec<StockLedger>> {
        let rows: Vec<(i64, i64, i32, Decimal, Decimal)> =
            self.0.run(async |c| sqlx::query_as(STOCK_LEDGER_SQL).fetch_all(c).await).await?;
        Ok(rows
            .into_iter()
            .map(|(product_id, units_stocked, stock, reserved, sold)| StockLedger {
                product_id,
                units_stocked,
                stock: i64::from(stock),
                reserved: reserved.try_into().unwrap_or(i64::MAX),
                sold: sold.try_into().unwrap_or(i64::MAX),
            })
            .collect())
    }

    async fn reservations(&self) -> ServiceResult<Vec<ReservationSummary>> {
        let rows: Vec<(String, String, i64, DateTime<Utc>)> =
            self.0.run(async |c| sqlx::query_as(RESERVATIONS_SQL).fetch_all(c).await).await?;
        rows.into_iter()
            .map(|(id, status, lines, expires_at)| {
                Ok(ReservationSummary { checkout_id: parse_checkout(&id)?, status, lines, expires_at })
            })
            .collect()
    }

    async fn reservation_lines(&self, checkout_id: Uuid) -> ServiceResult<Vec<ReservationLine>> {
        let rows: Vec<(String, i32, DateTime<Utc>, DateTime<Utc>)> = self
            .0
            .run(async |c| {
                sqlx::query_as(RESERVATION_LINES_SQL).bind(checkout_id.to_string()).fetch_all(c).await
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(status, quantity, created_at, updated_at)| ReservationLine {
                status,
                quantity: quantity.into(),
                created_at,
                updated_at,
            })
            .collect())
    }
}

/// Whether a reservation met again (a retried reserve) still stands: held or taken.
async fn held_already(c: &mut sqlx::MySqlConnection, key: &str) -> Result<bool, sqlx::Error> {
    let held: Option<String> = sqlx::query_scalar(
        "SELECT status FROM stock_reservations WHERE checkout_id = ? AND status <> 'RELEASED' LIMIT 1",
    )
    .bind(key)
    .fetch_optional(&mut *c)
    .await?;
    Ok(held.is_some())
}

fn parse_checkout(id: &str) -> ServiceResult<Uuid> {
    id.parse().map_err(|e| ServiceError::Internal(format!("stored checkout id {id:?}: {e}")))
}
