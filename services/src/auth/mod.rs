//! Auth: users, BCrypt passwords and HS256 JWTs.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ServiceError, ServiceResult};

pub mod hashing;
pub mod limits;
mod token;

use self::hashing::PasswordHasher;
use self::limits::{Limiter, LoginLimits};
pub use self::token::{
    Claims, JwtKeys, LEEWAY_SECS, MIN_SECRET_BYTES, SERVICE_TOKEN_TTL, Secret, USER_AUDIENCE, USER_ISSUER,
    check_secret_strength, load_or_create_secret, service_principal,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    User,
    Admin,
    /// Another service of the system (the Order service calling Payment, say). Never stored.
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::Admin => "ADMIN",
            Role::Service => "SERVICE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// A user row about to be inserted.
#[derive(Debug, Clone)]
pub struct NewUserRow<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// Where users live (the auth database).
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// `ServiceError::Conflict` when the username or email is taken.
    async fn insert(&self, user: NewUserRow<'_>) -> ServiceResult<User>;
    /// The password hash and role of `username`.
    async fn credentials(&self, username: &str) -> ServiceResult<Option<(String, Role)>>;
    async fn find(&self, username: &str) -> ServiceResult<Option<User>>;
    /// Sets the user's password hash and makes it ADMIN; false when there is no such user.
    async fn make_admin(&self, username: &str, password_hash: &str) -> ServiceResult<bool>;
}

/// The shortest password accepted at registration.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// The longest: what bcrypt reads. Refused beyond, rather than silently cut.
pub const MAX_PASSWORD_BYTES: usize = 72;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    pub token: String,
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub username: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub bcrypt_cost: u32,
    /// Threads computing password hashes, at the lowest CPU priority ([`hashing`]).
    pub hash_concurrency: usize,
    /// Logins and registrations waiting for a hashing thread; more are refused with 503.
    pub hash_queue: usize,
    /// The share of its time each hashing thread may spend hashing (above 0, at most 1).
    pub hash_cpu_share: f64,
    /// Failed logins per account and per address, registrations per address.
    pub limits: LoginLimits,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            bcrypt_cost: bcrypt::DEFAULT_COST,
            hash_concurrency: 1,
            hash_queue: 256,
            hash_cpu_share: 0.5,
            limits: LoginLimits::default(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService {
    users: Arc<dyn UserStore>,
    keys: JwtKeys,
    cost: u32,
    hashing: PasswordHasher,
    /// Compared against when the user does not exist, so that an unknown username costs as much
    /// time as a wrong password and the two cannot be told apart.
    dummy_hash: Arc<str>,
    limiter: Arc<Limiter>,
}

impl AuthService {
    /// Logins and registrations queued or being hashed now, and refused so far (queue full).
    pub fn hashing_queue(&self) -> (usize, u64) {
        self.hashing.queue()
    }

    pub async fn new(users: Arc<dyn UserStore>, keys: JwtKeys, config: &AuthConfig) -> ServiceResult<Self> {
        let hashing =
            PasswordHasher::start(config.hash_concurrency, config.hash_queue, config.hash_cpu_share)?;
        let cost = config.bcrypt_cost;
        let dummy = hashing.hash("not a real password".into(), cost).await?;
        let limiter = Arc::new(Limiter::new(config.limits));
        Ok(Self { users, keys, cost, hashing, dummy_hash: dummy.into(), limiter })
    }

    /// Makes an account with role USER; `from` is the client's address (limited per address).
    pub async fn register(&self, new: NewUser, from: Option<IpAddr>) -> ServiceResult<User> {
        validate_new_user(&new)?;
        self.limiter.register(from)?;
        let hash = self.hashing.hash(new.password, self.cost).await?;
        let row = NewUserRow {
            username: &new.username,
            email: &new.email,
            password_hash: &hash,
            role: Role::User,
            created_at: crate::time::now(),
        };
        self.users.insert(row).await
    }

    /// Checks the password of `username`, logging in from `from` (the client's address).
    /// An unknown user and a wrong password answer the same, after the same bcrypt work.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        from: Option<IpAddr>,
    ) -> ServiceResult<LoginResponse> {
        self.limiter.before_login(username, from)?;
        let found = self.users.credentials(username).await?;
        let hash = found.as_ref().map_or_else(|| self.dummy_hash.to_string(), |(hash, _)| hash.clone());
        // BCrypt reads 72 bytes; a longer password cannot be one that was registered.
        let too_long = password.len() > MAX_PASSWORD_BYTES;
        let ok = self.hashing.verify(password.to_owned(), hash).await? && !too_long;
        let role = match (ok, found) {
            (true, Some((_, role))) => role,
            _ => {
                self.limiter.login_failed(username, from);
                return Err(ServiceError::Unauthorized("invalid username or password".into()));
            }
        };
        self.limiter.login_succeeded(username);
        Ok(LoginResponse {
            token: self.keys.issue(username, role)?,
            token_type: "Bearer",
            expires_in: self.keys.ttl().as_secs(),
            username: username.to_owned(),
            role,
        })
    }

    pub async fn find(&self, username: &str) -> ServiceResult<User> {
        self.users
            .find(username)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("user {username} not found")))
    }

    /// Makes sure user `admin` exists with role ADMIN and this password.
    pub async fn ensure_admin(&self, password: &str) -> ServiceResult<()> {
        if password.len() < 8 {
            return Err(ServiceError::Invalid("SHOP_ADMIN_PASSWORD must have at least 8 characters".into()));
        }
        let hash = self.hashing.hash(password.to_owned(), self.cost).await?;
        if self.users.make_admin("admin", &hash).await? {
            return Ok(());
        }
        let row = NewUserRow {
            username: "admin",
            email: "admin@shop.local",
            password_hash: &hash,
            role: Role::Admin,
            created_at: crate::time::now(),
        };
        match self.users.insert(row).await {
            // Another instance created it meanwhile: make sure it has this password.
            Err(ServiceError::Conflict(_)) => self.users.make_admin("admin", &hash).await.map(|_| ()),
            other => other.map(|_| ()),
        }
    }
}

fn validate_new_user(u: &NewUser) -> ServiceResult<()> {
    let name_ok = (3..=50).contains(&u.username.len())
        && u.username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return Err(ServiceError::Invalid(
            "username must be 3 to 50 characters: letters, digits, '_', '-' or '.'".into(),
        ));
    }
    // The rule the OpenAPI document states as a pattern (http/src/routes/auth.rs).
    let email_ok = u.email.len() <= 100
        && u.email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.chars().all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
                && domain.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !email_ok {
        return Err(ServiceError::Invalid("email must be a valid address of at most 100 characters".into()));
    }
    // BCrypt reads at most 72 bytes; a longer password would be silently truncated.
    if !(MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&u.password.len()) {
        return Err(ServiceError::Invalid("password must be 8 to 72 bytes long".into()));
    }
    Ok(())
}
