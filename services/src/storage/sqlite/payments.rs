//! SQLite: Payments: one per order.

use async_trait::async_trait;
use rusqlite::{Connection, Row, params};

use super::codec::{decode, money_at, rows, time_at, ts};
use super::db::{SqliteDb, SqliteError, is_unique_violation};
use crate::error::ServiceResult;
use crate::payment::{NewPayment, Payment, PaymentChange, PaymentStore, PaymentSummary};
use crate::storage::common::{PAYMENT_UPDATE_SQL, money_text, payment_status};

pub struct Payments(pub SqliteDb);

const PAYMENT_COLUMNS: &str = "id, order_id, user_id, amount, status, transaction_id, gateway_response, \
     failure_reason, refunded_at, refund_reason, created_at, updated_at";

fn payment(row: &Row<'_>) -> Result<Payment, SqliteError> {
    Ok(Payment {
        id: row.get("id")?,
        order_id: row.get("order_id")?,
        user_id: row.get("user_id")?,
        amount: money_at(row, "amount")?,
        status: payment_status(&row.get::<_, String>("status")?).map_err(decode)?,
        transaction_id: row.get("transaction_id")?,
        gateway_response: row.get("gateway_response")?,
        failure_reason: row.get("failure_reason")?,
        refunded_at: row
            .get::<_, Option<String>>("refunded_at")?
            .as_deref()
            .map(super::codec::parse_ts)
            .transpose()?,
        refund_reason: row.get("refund_reason")?,
        created_at: time_at(row, "created_at")?,
        updated_at: row
            .get::<_, Option<String>>("updated_at")?
            .as_deref()
            .map(super::codec::parse_ts)
            .transpose()?,
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
            "INSERT INTO payments (order_id, user_id, amount, status, failure_reason, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {PAYMENT_COLUMNS}"
        );
        let values = (
            p.order_id,
            p.user_id.to_owned(),
            money_text(p.amount),
            p.status.as_str(),
            p.failure_reason.map(str::to_owned),
            ts(p.created_at),
        );
        let inserted = self
            .0
            .write
            .run(move |c| {
                let (order_id, user_id, amount, status, reason, at) = values;
                payments(c, &sql, params![order_id, user_id, amount, status, reason, at, at])
            })
            .await;
        match inserted {
            Ok(rows) => Ok(rows.into_iter().next()),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn update(&self, current: &Payment, ch: PaymentChange) -> ServiceResult<Option<Payment>> {
        let (order_id, from) = (current.order_id, current.status);
        let sql = format!("{PAYMENT_UPDATE_SQL} RETURNING {PAYMENT_COLUMNS}");
        Ok(self
            .0
            .write
            .run(move |c| {
                let values = params![
                    ch.status.as_str(),
                    ch.transaction_id,
                    ch.gateway_response,
                    ch.failure_reason,
                    ch.refunded_at.map(ts),
                    ch.refund_reason,
                    ts(ch.at),
                    order_id,
                    from.as_str(),
                ];
                payments(c, &sql, values)
            })
            .await?
            .pop())
    }

    async fn summaries(&self) -> ServiceResult<Vec<PaymentSummary>> {
        Ok(self
            .0
            .read
            .run(|c| {
                rows(c, "SELECT id, order_id, status, amount, transaction_id FROM payments", [], |r| {
                    Ok(PaymentSummary {
                        id: r.get("id")?,
                        order_id: r.get("order_id")?,
                        status: payment_status(&r.get::<_, String>("status")?).map_err(decode)?,
                        amount: money_at(r, "amount")?,
                        transaction_id: r.get("transaction_id")?,
                    })
                })
            })
            .await?)
    }
}
