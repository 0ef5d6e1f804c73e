//! SQLite: Products: the catalog.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, params};

use rusqlite::OptionalExtension;
use shop_actors::model::LineQuantity;
use shop_actors::ports::{Page, Shortage};
use uuid::Uuid;

use super::codec::{decode, money_at, parse_ts, rows, time_at, ts};
use super::db::{SqliteDb, SqliteError};
use crate::error::{ServiceError, ServiceResult};
use crate::history::ReservationLine;
use crate::product::{Product, ProductInput, ProductStore, Refusal, ReservationSummary, StockLedger};
use crate::storage::common::{
    END_RESERVATION_SQL, EXPIRED_RESERVATIONS_SQL, PRODUCT_UPDATE_SQL, RESERVATION_LINES_SQL,
    RESERVATIONS_SQL, RETURN_STOCK_SQL, SHORTAGE_SQL, STOCK_LEDGER_SQL, TAKE_STOCK_SQL, money_text,
};

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

#[async_trait]
impl ProductStore for Products {
    async fn list(&self, page: Page) -> ServiceResult<Vec<Product>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id > ? ORDER BY id LIMIT ?");
        let binds = [page.after.unwrap_or(i64::MIN), i64::from(page.limit)];
        Ok(self.0.read.run(move |c| products(c, &sql, binds)).await?)
    }

    async fn get(&self, id: i64) -> ServiceResult<Option<Product>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?");
        Ok(self.0.read.run(move |c| products(c, &sql, [id])).await?.pop())
    }

    async fn create(&self, p: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Product> {
        let sql = format!(
            "INSERT INTO products (name, description, price, stock, units_stocked, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {PRODUCT_COLUMNS}"
        );
        let p = p.clone();
        let created = self
            .0
            .write
            .run(move |c| {
                products(
                    c,
                    &sql,
                    params![p.name, p.description, money_text(p.price), p.stock, p.stock, ts(now), ts(now)],
                )
            })
            .await?;
        created.into_iter().next().ok_or_else(|| ServiceError::Internal("the insert returned no row".into()))
    }

    async fn update(&self, id: i64, p: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Option<Product>> {
        let sql = format!("{PRODUCT_UPDATE_SQL} RETURNING {PRODUCT_COLUMNS}");
        let p = p.clone();
        let updated = self
            .0
            .write
            .run(move |c| {
                let values =
                    params![p.stock, p.name, p.description, money_text(p.price), p.stock, ts(now), id];
                products(c, &sql, values)
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
                let tx = c.savepoint()?;
                let count: i64 = tx.query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0))?;
                if count > 0 || products.is_empty() {
                    return Ok(0);
                }
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO products (name, description, price, stock, units_stocked, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?)",
                    )?;
                    for p in &products {
                        insert.execute(params![
                            p.name,
                            p.description,
                            money_text(p.price),
                            p.stock,
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

    async fn reserve(
        &self,
        checkout_id: Uuid,
        lines: &[LineQuantity],
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> ServiceResult<Result<(), Refusal>> {
        let (key, lines, expires_at, now) =
            (checkout_id.to_string(), lines.to_vec(), ts(expires_at), ts(now));
        Ok(self
            .0
            .write
            .run(move |c| {
                let tx = c.savepoint()?;
                let held = tx
                    .prepare_cached(
                        "SELECT 1 FROM stock_reservations WHERE checkout_id = ? AND status <> 'RELEASED' LIMIT 1",
                    )?
                    .exists([&key])?;
                if held {
                    return Ok(Ok(()));
                }
                for line in &lines {
                    let taken = tx.prepare_cached(TAKE_STOCK_SQL)?.execute(params![
                        line.quantity,
                        line.product_id,
                        line.quantity
                    ])?;
                    if taken == 0 {
                        let found: Option<(String, i64)> = tx
                            .prepare_cached(SHORTAGE_SQL)?
                            .query_row([line.product_id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()?;
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
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO stock_reservations (checkout_id, product_id, quantity, status, expires_at, created_at, updated_at) \
                         VALUES (?, ?, ?, 'RESERVED', ?, ?, ?)",
                    )?;
                    for line in &lines {
                        insert.execute(params![key, line.product_id, line.quantity, expires_at, now, now])?;
                    }
                }
                tx.commit()?;
                Ok(Ok(()))
            })
            .await?)
    }

    async fn commit_reservation(
        &self,
        checkout_id: Uuid,
        now: DateTime<Utc>,
    ) -> ServiceResult<Result<(), Shortage>> {
        let (key, now) = (checkout_id.to_string(), ts(now));
        Ok(self
            .0
            .write
            .run(move |c| {
                let tx = c.savepoint()?;
                let ended =
                    tx.prepare_cached(END_RESERVATION_SQL)?.execute(params!["COMMITTED", now, key])?;
                // A reservation's lines are released together (by the TTL or a release), so held
                // lines committed means none had lapsed: nothing more to read.
                if ended > 0 {
                    tx.commit()?;
                    return Ok(Ok(()));
                }
                // Lines the TTL released before the order was paid: taken again if still there.
                let lapsed = rows(
                    &tx,
                    "SELECT product_id, quantity FROM stock_reservations \
                     WHERE checkout_id = ? AND status = 'RELEASED' ORDER BY product_id",
                    [&key],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )?;
                for (product_id, quantity) in lapsed {
                    let taken = tx
                        .prepare_cached(TAKE_STOCK_SQL)?
                        .execute(params![quantity, product_id, quantity])?;
                    if taken == 0 {
                        let (product_name, stock): (String, i64) = tx
                            .prepare_cached(SHORTAGE_SQL)?
                            .query_row([product_id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()?
                            .unwrap_or_else(|| (format!("product {product_id}"), 0));
                        tx.commit()?;
                        return Ok(Err(Shortage {
                            product_id,
                            product_name,
                            requested: u32::try_from(quantity).unwrap_or(0),
                            available: u32::try_from(stock).unwrap_or(0),
                        }));
                    }
                    tx.prepare_cached(
                        "UPDATE stock_reservations SET status = 'COMMITTED', updated_at = ? \
                         WHERE checkout_id = ? AND product_id = ?",
                    )?
                    .execute(params![now, key, product_id])?;
                }
                tx.commit()?;
                Ok(Ok(()))
            })
            .await?)
    }

    async fn release_reservation(&self, checkout_id: Uuid, now: DateTime<Utc>) -> ServiceResult<usize> {
        let (key, now) = (checkout_id.to_string(), ts(now));
        Ok(self
            .0
            .write
            .run(move |c| {
                let tx = c.savepoint()?;
                let held = rows(
                    &tx,
                    "SELECT product_id, quantity FROM stock_reservations WHERE checkout_id = ? AND status = 'RESERVED'",
                    [&key],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )?;
                if held.is_empty() {
                    return Ok(0);
                }
                tx.prepare_cached(END_RESERVATION_SQL)?.execute(params!["RELEASED", now, key])?;
                for (product_id, quantity) in &held {
                    tx.prepare_cached(RETURN_STOCK_SQL)?.execute(params![quantity, product_id])?;
                }
                tx.commit()?;
                Ok(held.len())
            })
            .await?)
    }

    async fn expired_reservations(&self, now: DateTime<Utc>, limit: usize) -> ServiceResult<Vec<Uuid>> {
        let (now, limit) = (ts(now), i64::try_from(limit).unwrap_or(i64::MAX));
        Ok(self
            .0
            .read
            .run(move |c| {
                rows(c, EXPIRED_RESERVATIONS_SQL, params![now, limit], |r| {
                    r.get::<_, String>(0)?.parse().map_err(decode)
                })
            })
            .await?)
    }

    async fn stock_ledger(&self) -> ServiceResult<Vec<StockLedger>> {
        Ok(self
            .0
            .read
            .run(|c| {
                rows(c, STOCK_LEDGER_SQL, [], |r| {
                    Ok(StockLedger {
                        product_id: r.get(0)?,
                        units_stocked: r.get(1)?,
                        stock: r.get(2)?,
                        reserved: r.get(3)?,
                        sold: r.get(4)?,
                    })
                })
            })
            .await?)
    }

    async fn reservations(&self) -> ServiceResult<Vec<ReservationSummary>> {
        Ok(self
            .0
            .read
            .run(|c| {
                rows(c, RESERVATIONS_SQL, [], |r| {
                    Ok(ReservationSummary {
                        checkout_id: r.get::<_, String>(0)?.parse().map_err(decode)?,
                        status: r.get(1)?,
                        lines: r.get(2)?,
                        expires_at: parse_ts(&r.get::<_, String>(3)?)?,
                    })
                })
            })
            .await?)
    }

    async fn reservation_lines(&self, checkout_id: Uuid) -> ServiceResult<Vec<ReservationLine>> {
        Ok(self
            .0
            .read
            .run(move |c| {
                rows(c, RESERVATION_LINES_SQL, [checkout_id.to_string()], |r| {
                    Ok(ReservationLine {
                        status: r.get(0)?,
                        quantity: r.get(1)?,
                        created_at: parse_ts(&r.get::<_, String>(2)?)?,
                        updated_at: parse_ts(&r.get::<_, String>(3)?)?,
                    })
                })
            })
            .await?)
    }
}
