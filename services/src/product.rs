//! Product: the catalog. Anyone reads it; only ADMIN writes it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use shop_actors::model::ProductSnapshot;
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row};

use crate::db::{SqliteDb, decimal, money_text};
use crate::error::{ServiceError, ServiceResult};
use crate::money::positive_amount;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub price: Decimal,
    pub stock: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    pub fn snapshot(&self) -> ProductSnapshot {
        ProductSnapshot { id: self.id, name: self.name.clone(), price: self.price }
    }
}

/// A product as a client writes it (create, or full replacement).
#[derive(Debug, Clone)]
pub struct ProductInput {
    pub name: String,
    pub description: Option<String>,
    pub price: Decimal,
    pub stock: i64,
}

/// Largest stock one product may hold.
pub const MAX_STOCK: i64 = 1_000_000;

impl ProductInput {
    fn validated(mut self) -> ServiceResult<Self> {
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() || self.name.chars().count() > 255 {
            return Err(ServiceError::Invalid("name must be 1 to 255 characters".into()));
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > 2000) {
            return Err(ServiceError::Invalid("description must be at most 2000 characters".into()));
        }
        self.price = positive_amount("price", self.price)?;
        if !(0..=MAX_STOCK).contains(&self.stock) {
            return Err(ServiceError::Invalid(format!("stock must be between 0 and {MAX_STOCK}")));
        }
        Ok(self)
    }
}

/// The catalog the embedded system starts with when it has none.
pub fn seed_catalog() -> Vec<ProductInput> {
    let p = |name: &str, description: &str, cents: i64, stock: i64| ProductInput {
        name: name.into(),
        description: Some(description.into()),
        price: Decimal::new(cents, 2),
        stock,
    };
    vec![
        p("Laptop", "15-inch laptop, 16 GB RAM, 512 GB SSD", 99999, 50),
        p("Mouse", "Wireless optical mouse", 2999, 100),
        p("Keyboard", "Mechanical keyboard", 7999, 75),
        p("Monitor", "27-inch 4K monitor", 34999, 30),
        p("Headphones", "Noise-cancelling headphones", 14999, 60),
    ]
}

#[derive(Clone)]
pub struct ProductService {
    db: SqliteDb,
}

const COLUMNS: &str = "id, name, description, price, stock, created_at, updated_at";

fn from_row(row: &SqliteRow) -> ServiceResult<Product> {
    Ok(Product {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price: decimal(row.try_get::<&str, _>("price")?)?,
        stock: row.try_get("stock")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl ProductService {
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }

    pub async fn list(&self) -> ServiceResult<Vec<Product>> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM products ORDER BY id")))
            .fetch_all(&self.db.read)
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn get(&self, id: i64) -> ServiceResult<Product> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM products WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.db.read)
            .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(ServiceError::NotFound(format!("product {id} not found"))),
        }
    }

    pub async fn create(&self, input: ProductInput) -> ServiceResult<Product> {
        let p = input.validated()?;
        let now = Utc::now();
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO products (name, description, price, stock, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
        )))
        .bind(&p.name)
        .bind(&p.description)
        .bind(money_text(p.price))
        .bind(p.stock)
        .bind(now)
        .bind(now)
        .fetch_one(&self.db.write)
        .await?;
        from_row(&row)
    }

    pub async fn update(&self, id: i64, input: ProductInput) -> ServiceResult<Product> {
        let p = input.validated()?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE products SET name = ?, description = ?, price = ?, stock = ?, updated_at = ? \
             WHERE id = ? RETURNING {COLUMNS}"
        )))
        .bind(&p.name)
        .bind(&p.description)
        .bind(money_text(p.price))
        .bind(p.stock)
        .bind(Utc::now())
        .bind(id)
        .fetch_optional(&self.db.write)
        .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(ServiceError::NotFound(format!("product {id} not found"))),
        }
    }

    pub async fn delete(&self, id: i64) -> ServiceResult<()> {
        let done = sqlx::query("DELETE FROM products WHERE id = ?").bind(id).execute(&self.db.write).await?;
        if done.rows_affected() == 0 {
            return Err(ServiceError::NotFound(format!("product {id} not found")));
        }
        Ok(())
    }

    /// Fills an empty catalog with [`seed_catalog`]; a catalog with any product is left alone.
    pub async fn seed_if_empty(&self) -> ServiceResult<usize> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM products").fetch_one(&self.db.read).await?;
        if count > 0 {
            return Ok(0);
        }
        let now = Utc::now();
        let seed = seed_catalog();
        let mut insert = QueryBuilder::new(
            "INSERT INTO products (name, description, price, stock, created_at, updated_at) ",
        );
        insert.push_values(&seed, |mut b, p| {
            b.push_bind(&p.name)
                .push_bind(&p.description)
                .push_bind(money_text(p.price))
                .push_bind(p.stock)
                .push_bind(now)
                .push_bind(now);
        });
        insert.build().execute(&self.db.write).await?;
        Ok(seed.len())
    }
}
