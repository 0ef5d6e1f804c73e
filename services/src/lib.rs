//! The five services of **shop**: domain rules and storage, with no HTTP in them.
//!
//! ```text
//!  auth/      AuthService: users, BCrypt (hashing.rs), HS256 tokens (token.rs); UserStore
//!  product    ProductService: the catalog; ProductStore
//!  cart       CartService ─► shop_actors::Carts (cart actors) ─► CartStore; Catalog (Cart → Product)
//!  payment/   PaymentService: one payment per order, the mock gateway (gateway.rs); PaymentStore
//!  order      OrderService ─► shop_actors::Checkouts (saga) and Orders (order actors); OrderRepo
//!  history    an order's audit trail from every service's rows; HistorySource
//!  storage/   Database: each service's database on SQLite or MySQL, one file per repository
//!  kafka      the Kafka adapter: the actor core's EventBus, and the Cart side's consumer
//!  tools/     audit (the cross-database invariants), ceiling (the commit ceiling)
//!  testing    fresh MySQL databases for tests (feature `test-support`)
//! ```
//!
//! Each domain module owns its row types and its store trait; [`storage`] implements them per
//! backend, so storage depends on the domain and never the reverse. The HTTP layer turns
//! [`ServiceError`] into problem+json.

pub mod auth;
pub mod cart;
pub mod error;
pub mod history;
pub mod kafka;
pub mod money;
pub mod order;
pub mod payment;
pub mod product;
mod service;
pub mod storage;
pub mod time;
pub mod tools;

#[cfg(feature = "test-support")]
pub mod testing;

pub use crate::error::{ServiceError, ServiceResult};
pub use crate::service::Service;
