//! SQLite: Products: the catalog.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, TransactionBehavior, params};

use super::codec::{money_at, rows, time_at, ts};
use super::db::{SqliteDb, SqliteError};
use crate::error::{ServiceError, ServiceResult};
use crate::product::{Product, ProductInput, ProductStore};
use crate::storage::common::money_text;

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
    async fn list(&self) -> ServiceResult<Vec<Product>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id");
        Ok(self.0.read.run(move |c| products(c, &sql, [])).await?)
    }

    async fn get(&self, id: i64) -> ServiceResult<Option<Product>> {
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?");
        Ok(self.0.read.run(move |c| products(c, &sql, [id])).await?.pop())
    }

    async fn create(&self, p: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Product> {
        let sql = format!(
            "INSERT INTO products (name, description, price, stock, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING {PRODUCT_COLUMNS}"
        );
        let p = p.clone();
        let created = self
            .0
            .write
            .run(move |c| {
                products(
                    c,
                    &sql,
                    params![p.name, p.description, money_text(p.price), p.stock, ts(now), ts(now)],
                )
            })
            .await?;
        created.into_iter().next().ok_or_else(|| ServiceError::Internal("the insert returned no row".into()))
    }

    async fn update(&self, id: i64, p: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Option<Product>> {
        let sql = format!(
            "UPDATE products SET name = ?, description = ?, price = ?, stock = ?, updated_at = ? \
             WHERE id = ? RETURNING {PRODUCT_COLUMNS}"
        );
        let p = p.clone();
        let updated = self
            .0
            .write
            .run(move |c| {
                products(c, &sql, params![p.name, p.description, money_text(p.price), p.stock, ts(now), id])
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
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let count: i64 = tx.query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0))?;
                if count > 0 || products.is_empty() {
                    return Ok(0);
                }
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO products (name, description, price, stock, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                    )?;
                    for p in &products {
                        insert.execute(params![
                            p.name,
                            p.description,
                            money_text(p.price),
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
}
