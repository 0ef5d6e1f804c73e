//! The HTTP frontends of **shop** and the `shop` binary's building blocks.
//!
//! ```text
//!  main.rs ─► config::Cli ─► app::Application::build
//!                              ├─ five SQLite databases (shop_services::db)
//!                              ├─ the actor core (shop_actors::Core) + in-process bus
//!                              └─ five axum routers (routes::*) on five listeners
//!  request ─► extract (ApiJson / ApiPath / Caller) ─► service ─► error::ApiError (problem+json)
//! ```

pub mod app;
pub mod clients;
pub mod config;
pub mod error;
pub mod extract;
pub mod load;
pub mod routes;
pub mod serve;

pub use crate::app::{Application, StartError};
pub use crate::config::{Cli, Command, RunConfig, ServeConfig};
