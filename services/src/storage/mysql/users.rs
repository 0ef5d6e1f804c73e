//! MySQL: Users: the auth database.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::pool::MySqlDb;
use super::support::id;
use crate::auth::{NewUserRow, User, UserStore};
use crate::error::{ServiceError, ServiceResult};
use crate::storage::common::{is_unique_violation, role};

pub struct Users(pub MySqlDb);

#[async_trait]
impl UserStore for Users {
    async fn insert(&self, u: NewUserRow<'_>) -> ServiceResult<User> {
        let result = retry_transient!(self.0, |c| {
            sqlx::query(
                "INSERT INTO users (username, email, password, role, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(u.username)
            .bind(u.email)
            .bind(u.password_hash)
            .bind(u.role.as_str())
            .bind(u.created_at)
            .execute(&mut *c)
            .await
        });
        match result {
            Ok(done) => Ok(User {
                id: id(done.last_insert_id())?,
                username: u.username.to_owned(),
                email: u.email.to_owned(),
                role: u.role,
                created_at: u.created_at,
            }),
            Err(e) if is_unique_violation(&e) => {
                Err(ServiceError::Conflict("that username or email is already registered".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn credentials(&self, username: &str) -> ServiceResult<Option<(String, crate::auth::Role)>> {
        let row: Option<(String, String)> = self
            .0
            .run(async |c| {
                sqlx::query_as("SELECT password, role FROM users WHERE username = ?")
                    .bind(username)
                    .fetch_optional(c)
                    .await
            })
            .await?;
        row.map(|(hash, r)| Ok((hash, role(&r)?))).transpose()
    }

    async fn find(&self, username: &str) -> ServiceResult<Option<User>> {
        let row: Option<(i64, String, String, String, DateTime<Utc>)> = self
            .0
            .run(async |c| {
                sqlx::query_as("SELECT id, username, email, role, created_at FROM users WHERE username = ?")
                    .bind(username)
                    .fetch_optional(c)
                    .await
            })
            .await?;
        row.map(|(id, username, email, r, created_at)| {
            Ok(User { id, username, email, role: role(&r)?, created_at })
        })
        .transpose()
    }

    async fn make_admin(&self, username: &str, password_hash: &str) -> ServiceResult<bool> {
        let done = retry_transient!(self.0, |c| {
            sqlx::query("UPDATE users SET password = ?, role = 'ADMIN' WHERE username = ?")
                .bind(password_hash)
                .bind(username)
                .execute(&mut *c)
                .await
        })?;
        Ok(done.rows_affected() > 0)
    }
}
