//! MySQL: Payments: one per order.

use async_trait::async_trait;
use rust_decimal::Decimal;
use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, Row};

use super::pool::MySqlDb;
use super::support::id;
use crate::error::ServiceResult;
use crate::payment::{NewPayment, Payment, PaymentStore, PaymentSummary};
use crate::storage::common::{is_unique_violation, payment_status, payment_status_str};

pub struct Payments(pub MySqlDb);

const PAYMENT_COLUMNS: &str =
    "id, order_id, user_id, amount, status, transaction_id, failure_reason, created_at";

fn payment(row: &MySqlRow) -> ServiceResult<Payment> {
    Ok(Payment {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        amount: row.try_get("amount")?,
        status: payment_status(row.try_get::<&str, _>("status")?)?,
        transaction_id: row.try_get("transaction_id")?,
        failure_reason: row.try_get("failure_reason")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl PaymentStore for Payments {
    async fn find_by_order(&self, order_id: i64) -> ServiceResult<Option<Payment>> {
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

    async fn insert(&self, p: NewPayment<'_>) -> ServiceResult<Option<Payment>> {
        let inserted = retry_transient!(self.0, |c| {
            sqlx::query(
                "INSERT INTO payments (order_id, user_id, amount, status, transaction_id, failure_reason, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(p.order_id)
            .bind(p.user_id)
            .bind(p.amount)
            .bind(payment_status_str(p.status))
            .bind(p.transaction_id)
            .bind(p.failure_reason)
            .bind(p.created_at)
            .execute(&mut *c)
            .await
        });
        match inserted {
            Ok(done) => Ok(Some(Payment {
                id: id(done.last_insert_id())?,
                order_id: p.order_id,
                user_id: p.user_id.to_owned(),
                amount: p.amount,
                status: p.status,
                transaction_id: p.transaction_id.map(str::to_owned),
                failure_reason: p.failure_reason.map(str::to_owned),
                created_at: p.created_at,
            })),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn summaries(&self) -> ServiceResult<Vec<PaymentSummary>> {
        let rows: Vec<(i64, i64, String, Decimal)> = self
            .0
            .run(async |c| {
                sqlx::query_as("SELECT id, order_id, status, amount FROM payments").fetch_all(c).await
            })
            .await?;
        rows.into_iter()
            .map(|(id, order_id, status, amount)| {
                Ok(PaymentSummary { id, order_id, status: payment_status(&status)?, amount })
            })
            .collect()
    }
}
