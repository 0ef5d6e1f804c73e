//! SQLite: Users: the auth database.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::codec::{time_at, ts};
use super::db::{SqliteDb, is_unique_violation};
use crate::auth::{NewUserRow, User, UserStore};
use crate::error::{ServiceError, ServiceResult};
use crate::storage::common::role;

pub struct Users(pub SqliteDb);

#[async_trait]
impl UserStore for Users {
    async fn insert(&self, u: NewUserRow<'_>) -> ServiceResult<User> {
        let (username, email, hash) = (u.username.to_owned(), u.email.to_owned(), u.password_hash.to_owned());
        let (role, created_at) = (u.role, u.created_at);
        let inserted = self
            .0
            .write
            .run(move |c| {
                c.prepare_cached(
                    "INSERT INTO users (username, email, password, role, created_at) VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![username, email, hash, role.as_str(), ts(created_at)])?;
                Ok((c.last_insert_rowid(), username, email))
            })
            .await;
        match inserted {
            Ok((id, username, email)) => Ok(User { id, username, email, role, created_at }),
            Err(e) if is_unique_violation(&e) => {
                Err(ServiceError::Conflict("that username or email is already registered".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn credentials(&self, username: &str) -> ServiceResult<Option<(String, crate::auth::Role)>> {
        let username = username.to_owned();
        let row = self
            .0
            .read
            .run(move |c| {
                Ok(c.prepare_cached("SELECT password, role FROM users WHERE username = ?")?
                    .query_row([username], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .optional()?)
            })
            .await?;
        row.map(|(hash, r)| Ok((hash, role(&r)?))).transpose()
    }

    async fn find(&self, username: &str) -> ServiceResult<Option<User>> {
        let username = username.to_owned();
        let row = self
            .0
            .read
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id, username, email, role, created_at FROM users WHERE username = ?",
                )?;
                let mut rows = stmt.query([username])?;
                let Some(r) = rows.next()? else { return Ok(None) };
                Ok(Some((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    time_at(r, "created_at")?,
                )))
            })
            .await?;
        row.map(|(id, username, email, r, created_at)| {
            Ok(User { id, username, email, role: role(&r)?, created_at })
        })
        .transpose()
    }

    async fn make_admin(&self, username: &str, password_hash: &str) -> ServiceResult<bool> {
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        let changed = self
            .0
            .write
            .run(move |c| {
                Ok(c.prepare_cached("UPDATE users SET password = ?, role = 'ADMIN' WHERE username = ?")?
                    .execute(params![hash, username])?)
            })
            .await?;
        Ok(changed > 0)
    }
}
