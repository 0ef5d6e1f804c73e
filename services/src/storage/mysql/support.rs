//! What the MySQL repositories share: transient-error retries and value conversions.

use std::time::Duration;

use shop_actors::ports::StoreError;
use shop_actors::retry::{Backoff, Retry};
use sqlx::mysql::MySqlDatabaseError;

use crate::error::{ServiceError, ServiceResult};

/// A transaction that keeps failing transiently runs at most 6 times, waiting 10, 20, 40 … ms
/// (with jitter, so that the two sides of a deadlock do not meet again).
pub(crate) const TRANSIENT: Retry =
    Retry { attempts: 6, backoff: Backoff::Exponential { base: Duration::from_millis(5), max_doublings: 6 } };

/// Whether MySQL aborted the statement for a reason that running it again can cure.
pub fn is_transient(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|m| matches!(m.number(), 1213 | 1205 | 1020))
}

pub(super) fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(super) fn quantity(q: i32) -> ServiceResult<u32> {
    u32::try_from(q).map_err(|_| ServiceError::Internal(format!("stored quantity {q}")))
}

pub(super) fn id(v: u64) -> ServiceResult<i64> {
    i64::try_from(v).map_err(|_| ServiceError::Internal(format!("insert id {v} out of range")))
}
