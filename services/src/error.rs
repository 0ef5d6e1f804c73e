//! The services' one error type. The HTTP layer maps each variant to a status code once.

use shop_actors::ports::{CartPortError, Shortage, StockError, StoreError};
use shop_actors::{CartError, CheckoutError, OrderError, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed or breaks a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// Missing, expired or wrong credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts current state: taken username, wrong status transition (409).
    #[error("{0}")]
    Conflict(String),
    /// The stock cannot cover a line of the cart (409, naming the product and what is left).
    #[error("{}", StockError::Insufficient(.0.clone()))]
    OutOfStock(Shortage),
    /// Too much going on right now; the client may retry shortly (503).
    #[error("{0}")]
    Busy(String),
    /// Too many attempts from this client or for this account; retry after that many seconds (429).
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// Something behind the service failed. The text goes to the log, never to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        ServiceError::Internal(format!("database: {e}"))
    }
}

impl From<sqlx::migrate::MigrateError> for ServiceError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        ServiceError::Internal(format!("migration: {e}"))
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ServiceError::Busy(format!("concurrent update, please retry ({m})")),
            StoreError::Duplicate(m) => ServiceError::Conflict(m),
            StoreError::Unavailable(m) => ServiceError::Internal(m),
        }
    }
}

impl From<RegistryError> for ServiceError {
    fn from(e: RegistryError) -> Self {
        ServiceError::Busy(e.to_string())
    }
}

impl From<CartError> for ServiceError {
    fn from(e: CartError) -> Self {
        match e {
            CartError::NotInCart(_) => ServiceError::NotFound(e.to_string()),
            CartError::QuantityOutOfRange(_) | CartError::Empty | CartError::TotalTooLarge(_) => {
                ServiceError::Invalid(e.to_string())
            }
            CartError::CheckoutInProgress => ServiceError::Conflict(e.to_string()),
            CartError::Store(s) => s.into(),
            CartError::Registry(r) => r.into(),
        }
    }
}

/// A cart lease refused or not granted, as the Cart service answers the Order service.
impl From<CartPortError> for ServiceError {
    fn from(e: CartPortError) -> Self {
        match e {
            CartPortError::Empty => ServiceError::Invalid(e.to_string()),
            CartPortError::CheckoutInProgress => ServiceError::Conflict(e.to_string()),
            CartPortError::Unavailable(m) => ServiceError::Busy(m),
        }
    }
}

impl From<OrderError> for ServiceError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotFound(_) => ServiceError::NotFound(e.to_string()),
            OrderError::InvalidTransition { .. } => ServiceError::Conflict(e.to_string()),
            OrderError::Store(s) => s.into(),
            OrderError::Registry(r) => r.into(),
        }
    }
}

impl From<CheckoutError> for ServiceError {
    fn from(e: CheckoutError) -> Self {
        match e {
            CheckoutError::EmptyCart => {
                ServiceError::Invalid("the cart is empty: add items before checking out".into())
            }
            CheckoutError::OutOfStock(shortage) => ServiceError::OutOfStock(shortage),
            CheckoutError::InProgress | CheckoutError::UnknownProduct(_) => {
                ServiceError::Conflict(e.to_string())
            }
            CheckoutError::Busy | CheckoutError::PaymentUnavailable { .. } => {
                ServiceError::Busy(e.to_string())
            }
            CheckoutError::Unavailable(m) => ServiceError::Internal(m),
        }
    }
}
