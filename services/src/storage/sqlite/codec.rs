//! Values as the SQLite repositories store them: money as canonical decimal text, times as
//! RFC 3339 text.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Row};
use shop_actors::ports::StoreError;

use crate::error::ServiceError;
use crate::storage::common::decimal;
use crate::storage::sqlite::db::SqliteError;

impl From<SqliteError> for ServiceError {
    fn from(e: SqliteError) -> Self {
        ServiceError::Internal(format!("database: {e}"))
    }
}

pub(super) fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(super) fn decode(e: impl std::fmt::Display) -> SqliteError {
    SqliteError::Decode(e.to_string())
}

/// Times as sqlx wrote them before this store existed, so old and new rows read alike.
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

pub(super) fn parse_ts(s: &str) -> Result<DateTime<Utc>, SqliteError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%F %T%.f")
        .map(|t| t.and_utc())
        .map_err(|e| SqliteError::Decode(format!("stored time {s:?}: {e}")))
}

pub(super) fn time_at(row: &Row<'_>, column: &str) -> Result<DateTime<Utc>, SqliteError> {
    parse_ts(&row.get::<_, String>(column)?)
}

pub(super) fn money_at(row: &Row<'_>, column: &str) -> Result<rust_decimal::Decimal, SqliteError> {
    decimal(&row.get::<_, String>(column)?).map_err(decode)
}

pub(super) fn quantity_at(row: &Row<'_>, column: &str) -> Result<u32, SqliteError> {
    let q: i64 = row.get(column)?;
    u32::try_from(q).map_err(|_| SqliteError::Decode(format!("stored quantity {q}")))
}

/// The rows `sql` answers with `params`, each decoded by `decode`.
pub(super) fn rows<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&Row<'_>) -> Result<T, SqliteError>,
) -> Result<Vec<T>, SqliteError> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(decode(row)?);
    }
    Ok(found)
}
