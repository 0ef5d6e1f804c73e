//! The five services of **shop**: domain rules and storage, with no HTTP in them.
//!
//! ```text
//!  auth     users, BCrypt, HS256 JWTs                      ── auth database
//!  product  the catalog                                    ── product database
//!  cart     CartService ─► shop_actors::Carts (actors) ─► SqliteCartStore ── cart database
//!  payment  PaymentService: mock gateway, one payment per order ── payment database
//!  order    OrderService ─► shop_actors::Checkouts (saga) ─► Orders ─► SqliteOrderStore ── order database
//!                              │ charges through PaymentService (a PaymentGateway)
//!                              └ leases carts through Carts (a CartPort)
//! ```
//!
//! The HTTP layer turns [`error::ServiceError`] into problem+json; [`audit`] checks the
//! cross-database invariants.

pub mod audit;
pub mod auth;
pub mod cart;
pub mod ceiling;
pub mod db;
pub mod error;
pub mod hashing;
pub mod kafka;
pub mod money;
pub mod mysql_pool;
pub mod order;
pub mod payment;
pub mod product;
pub mod sqlite_db;
pub mod store;
pub mod testing;

pub use crate::error::{ServiceError, ServiceResult};
