//! SQLite: Payments: one per order.

use async_trait::async_trait;
use rusqlite::{Connection, Row, params};

use super::codec::{decode, money_at, rows, time_at, ts};
use super::db::{SqliteDb, SqliteError, is_unique_violation};
use crate::error::ServiceResult;
use crate::payment::{NewPayment, Payment, PaymentStore, PaymentSummary};
use crate::storage::common::{money_text, payment_status, payment_status_str};

pub struct Payments(pub SqliteDb);

const PAYMENT_COLUMNS: &str =
    "id, order_id, user_id, amount, status, transaction_id, failure_reason, created_at";

fn payment(row: &Row<'_>) -> Result<Payment, SqliteError> {
    Ok(Payment {
        id: row.get("id")?,
        order_id: row.get("order_id")?,
        user_id: row.get("user_id")?,
        amount: money_at(row, "amount")?,
        status: payment_status(&row.get::<_, String>("status")?).map_err(decode)?,
        transaction_id: row.get("transaction_id")?,
        failure_reason: row.get("failure_reason")?,
        created_at: time_at(row, "created_at")?,
    })
}

fn payments(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Payment>, SqliteError> {
    rows(c, sql, params, payment)
}

#[async_trait]
impl PaymentStore for Payments {
    async fn find_by_order(&self, order_id: i64) -> ServiceResult<Option<Payment>> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = ?");
        Ok(self.0.read.run(move |c| payments(c, &sql, [order_id])).await?.pop())
    }

    async fn insert(&self, p: NewPayment<'_>) -> ServiceResult<Option<Payment>> {
        let sql = format!(
            "INSERT INTO payments (order_id, user_id, amount, status, transaction_id, failure_reason, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {PAYMENT_COLUMNS}"
        );
        let values = (
            p.order_id,
            p.user_id.to_owned(),
            money_text(p.amount),
            payment_status_str(p.status),
            p.transaction_id.map(str::to_owned),
            p.failure_reason.map(str::to_owned),
            ts(p.created_at),
        );
        let inserted = self
            .0
            .write
            .run(move |c| {
                let (order_id, user_id, amount, status, txn, reason, at) = values;
                payments(c, &sql, params![order_id, user_id, amount, status, txn, reason, at])
            })
            .await;
        match inserted {
            Ok(rows) => Ok(rows.into_iter().next()),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn summaries(&self) -> ServiceResult<Vec<PaymentSummary>> {
        Ok(self
            .0
            .read
            .run(|c| {
                rows(c, "SELECT id, order_id, status, amount FROM payments", [], |r| {
                    Ok(PaymentSummary {
                        id: r.get("id")?,
                        order_id: r.get("order_id")?,
                        status: payment_status(&r.get::<_, String>("status")?).map_err(decode)?,
                        amount: money_at(r, "amount")?,
                    })
                })
            })
            .await?)
    }
}
