//! Product: the catalog. Anyone reads it; only ADMIN writes it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shop_actors::model::ProductSnapshot;

use crate::error::{ServiceError, ServiceResult};
use crate::money::positive_amount;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Where the catalog lives (the product database).
#[async_trait]
pub trait ProductStore: Send + Sync + 'static {
    async fn list(&self) -> ServiceResult<Vec<Product>>;
    async fn get(&self, id: i64) -> ServiceResult<Option<Product>>;
    async fn create(&self, product: &ProductInput, now: DateTime<Utc>) -> ServiceResult<Product>;
    async fn update(
        &self,
        id: i64,
        product: &ProductInput,
        now: DateTime<Utc>,
    ) -> ServiceResult<Option<Product>>;
    async fn delete(&self, id: i64) -> ServiceResult<bool>;
    /// Inserts `products` if the catalog is empty, in one transaction; returns how many.
    async fn seed_if_empty(&self, products: &[ProductInput], now: DateTime<Utc>) -> ServiceResult<usize>;
    /// Ids of products whose stock is below zero (there must be none).
    async fn negative_stock(&self) -> ServiceResult<Vec<i64>>;
}

#[derive(Clone)]
pub struct ProductService {
    store: Arc<dyn ProductStore>,
}

fn not_found(id: i64) -> ServiceError {
    ServiceError::NotFound(format!("product {id} not found"))
}

impl ProductService {
    pub fn new(store: Arc<dyn ProductStore>) -> Self {
        Self { store }
    }

    pub async fn list(&self) -> ServiceResult<Vec<Product>> {
        self.store.list().await
    }

    pub async fn get(&self, id: i64) -> ServiceResult<Product> {
        self.store.get(id).await?.ok_or_else(|| not_found(id))
    }

    pub async fn create(&self, input: ProductInput) -> ServiceResult<Product> {
        self.store.create(&input.validated()?, crate::time::now()).await
    }

    pub async fn update(&self, id: i64, input: ProductInput) -> ServiceResult<Product> {
        self.store.update(id, &input.validated()?, crate::time::now()).await?.ok_or_else(|| not_found(id))
    }

    pub async fn delete(&self, id: i64) -> ServiceResult<()> {
        if self.store.delete(id).await? { Ok(()) } else { Err(not_found(id)) }
    }

    /// Fills an empty catalog with [`seed_catalog`]; a catalog with any product is left alone.
    pub async fn seed_if_empty(&self) -> ServiceResult<usize> {
        self.store.seed_if_empty(&seed_catalog(), crate::time::now()).await
    }
}
