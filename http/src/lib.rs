//! The HTTP frontends of **shop** and the `shop` binary's building blocks.
//!
//! ```text
//!  main.rs ─► cli::Cli ─┬─ run   ─► app::Application   all five services in one process
//!                       ├─ serve ─► serve::Node        one service per process (distributed)
//!                       ├─ load  ─► tools::load        drives a running system, measures it
//!                       └─ audit ─► tools::audit       checks the invariants across the databases
//!
//!  app, serve ─► frontends   each service's Frontend (its router) and the Servers, built once
//!                  ├─ config      RunConfig / ServeConfig, per-service ports and databases
//!                  ├─ clients     Order → Cart / Payment, Cart → Product over HTTP (distributed)
//!                  └─ lease       the internal cart-lease API, both of its ends
//!
//!  request ─► routes::<service> ─► extract (ApiJson / ApiPath / Caller / IdempotencyKeyHeader)
//!          ─► shop_services ─► error::ApiError (problem+json)
//! ```
//!
//! Each database is SQLite (embedded default) or MySQL, per `SHOP_<SERVICE>_DATABASE_URL`, in
//! either mode; events travel on the in-process bus (`shop run`) or Kafka (`shop serve`).

pub mod app;
pub mod cli;
pub mod clients;
pub mod config;
pub mod error;
pub mod extract;
mod frontends;
pub mod gateway;
mod history;
mod lease;
pub mod limits;
mod metrics;
mod openapi;
mod ops;
pub mod otlp;
pub(crate) mod paging;
pub mod routes;
pub mod serve;
mod stock;
mod storefront;
pub mod tools;
pub mod trace;

pub use crate::app::{Application, Databases};
pub use crate::cli::{Cli, Command};
pub use crate::config::{RunConfig, ServeConfig, StorageConfig};
pub use crate::frontends::StartError;
