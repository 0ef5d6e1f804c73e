//! MySQL: Products: the catalog.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Connection;
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row};

use super::pool::MySqlDb;
use super::support::id;
use crate::error::{ServiceError, ServiceResult};
use crate::product::{Product, ProductInput, ProductStore};

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
    async fn list(&self) -> ServiceResult<Vec<Product>> {
        let rows = self
            .0
            .run(async |c| {
                sqlx::query(AssertSqlSafe(format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id")))
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
                "INSERT INTO products (name, description, price, stock, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&p.name)
            .bind(&p.description)
            .bind(p.price)
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
            sqlx::query(
                "UPDATE products SET name = ?, description = ?, price = ?, stock = ?, updated_at = ? WHERE id = ?",
            )
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
                "INSERT INTO products (name, description, price, stock, created_at, updated_at) ",
            );
            insert.push_values(products.iter().zip(&stocks), |mut b, (p, stock)| {
                b.push_bind(&p.name)
                    .push_bind(&p.description)
                    .push_bind(p.price)
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
}
