//! MySQL: Payments: one per order.

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, Row};

use super::pool::MySqlDb;
use crate::error::ServiceResult;
use crate::payment::{NewPayment, Payment, PaymentChange, PaymentStore, PaymentSummary};
use crate::storage::common::{PAYMENT_UPDATE_SQL, is_unique_violation, payment_status};

pub struct Payments(pub MySqlDb);

const PAYMENT_COLUMNS: &str = "id, order_id, user_id, amount, status, transaction_id, gateway_response, \
     failure_reason, refunded_at, refund_reason, created_at, updated_at";

fn payment(row: &MySqlRow) -> ServiceResult<Payment> {
    Ok(Payment {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        amount: row.try_get("amount")?,
        status: payment_status(row.try_get::<&str, _>("status")?)?,
        transaction_id: row.try_get("transaction_id")?,
        gateway_response: row.try_get("gateway_response")?,
        failure_reason: row.try_get("failure_reason")?,
        refunded_at: row.try_get("refunded_at")?,
        refund_reason: row.try_get("refund_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Payments {
    async fn find(&self, order_id: i64) -> ServiceResult<Option<Payment>> {
        let row = self
            .0
            .run(async |c| {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = ?"
                )))
                .bind(order_id)
                .fetch_optional(c)
                .await
            })
            .await?;
        row.as_ref().map(payment).transpose()
    }
}

#[async_trait]
impl PaymentStore for Payments {
    async fn find_by_order(&self, order_id: i64) -> ServiceResult<Option<Payment>> {
        self.find(order_id).await
    }

    async fn insert(&self, p: NewPayment<'_>) -> ServiceResult<Option<Payment>> {
        let inserted = retry_transient!(self.0, |c| {
            sqlx::query(
                "INSERT INTO payments (order_id, user_id, amount, status, failure_reason, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(p.order_id)
            .bind(p.user_id)
            .bind(p.amount)
            .bind(p.status.as_str())
            .bind(p.failure_reason)
            .bind(p.created_at)
            .bind(p.created_at)
            .execute(&mut *c)
            .await
        });
        match inserted {
            Ok(done) => Ok(Some(Payment {
                id: super::support::id(done.last_insert_id())?,
                order_id: p.order_id,
                user_id: p.user_id.to_owned(),
                amount: p.amount,
                status: p.status,
                transaction_id: None,
                gateway_response: None,
                failure_reason: p.failure_reason.map(str::to_owned),
                refunded_at: None,
                refund_reason: None,
                created_at: p.created_at,
                updated_at: Some(p.created_at),
            })),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn update(&self, current: &Payment, ch: PaymentChange) -> ServiceResult<Option<Payment>> {
        let done = retry_transient!(self.0, |c| {
            sqlx::query(PAYMENT_UPDATE_SQL)
                .bind(ch.status.as_str())
                .bind(&ch.transaction_id)
                .bind(&ch.gateway_response)
                .bind(&ch.failure_reason)
                .bind(ch.refunded_at)
                .bind(&ch.refund_reason)
                .bind(ch.at)
                .bind(current.order_id)
                .bind(current.status.as_str())
                .execute(&mut *c)
                .await
        })?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        // MySQL's UPDATE returns no row: the row as stored is known without reading it back.
        Ok(Some(ch.applied_to(current)))
    }

    async fn summaries(&self) -> ServiceResult<Vec<PaymentSummary>> {
        let rows: Vec<(i64, i64, String, Decimal, Option<String>)> = self
            .0
            .run(async |c| {
                sqlx::query_as("SELECT id, order_id, status, amount, transaction_id FROM payments")
                    .fetch_all(c)
                    .await
            })
            .await?;
        rows.into_iter()
            .map(|(id, order_id, status, amount, transaction_id)| {
                Ok(PaymentSummary { id, order_id, status: payment_status(&status)?, amount, transaction_id })
            })
            .collect()
    }
}
