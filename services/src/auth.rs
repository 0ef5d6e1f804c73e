//! Auth: users, BCrypt passwords and HS256 JWTs.

use std::sync::Arc;
use std::time::Duration;

use crate::hashing::PasswordHasher;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{ServiceError, ServiceResult};
use crate::store::{NewUserRow, UserStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The username.
    pub sub: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

/// A secret that does not print.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: impl Into<Arc<str>>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Signs and checks HS256 tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl JwtKeys {
    pub fn new(secret: &Secret, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, username: &str, role: Role) -> ServiceResult<String> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        self.sign(&Claims { sub: username.to_owned(), role, iat: now, exp: now.saturating_add(ttl) })
    }

    pub fn sign(&self, claims: &Claims) -> ServiceResult<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| ServiceError::Internal(format!("signing a token: {e}")))
    }

    pub fn verify(&self, token: &str) -> ServiceResult<Claims> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(
            |e| {
                ServiceError::Unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                    ErrorKind::InvalidSignature => "the token's signature is not valid".to_owned(),
                    _ => format!("the token is not valid: {e}"),
                })
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// Threads computing password hashes, at the lowest CPU priority ([`crate::hashing`]).
    pub hash_concurrency: usize,
    /// Logins and registrations waiting for a hashing thread; more are refused with 503.
    pub hash_queue: usize,
    /// The share of its time each hashing thread may spend hashing (above 0, at most 1).
    pub hash_cpu_share: f64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { bcrypt_cost: bcrypt::DEFAULT_COST, hash_concurrency: 1, hash_queue: 256, hash_cpu_share: 0.5 }
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
}

impl AuthService {
    pub async fn new(users: Arc<dyn UserStore>, keys: JwtKeys, config: &AuthConfig) -> ServiceResult<Self> {
        let hashing =
            PasswordHasher::start(config.hash_concurrency, config.hash_queue, config.hash_cpu_share)?;
        let cost = config.bcrypt_cost;
        let dummy = hashing.hash("not a real password".into(), cost).await?;
        Ok(Self { users, keys, cost, hashing, dummy_hash: dummy.into() })
    }

    pub fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    pub async fn register(&self, new: NewUser) -> ServiceResult<User> {
        validate_new_user(&new)?;
        let hash = self.hashing.hash(new.password, self.cost).await?;
        let row = NewUserRow {
            username: &new.username,
            email: &new.email,
            password_hash: &hash,
            role: Role::User,
            created_at: crate::db::now(),
        };
        self.users.insert(row).await
    }

    pub async fn login(&self, username: &str, password: &str) -> ServiceResult<LoginResponse> {
        let found = self.users.credentials(username).await?;
        let hash = found.as_ref().map_or_else(|| self.dummy_hash.to_string(), |(hash, _)| hash.clone());
        let ok = self.hashing.verify(password.to_owned(), hash).await?;
        let role = match (ok, found) {
            (true, Some((_, role))) => role,
            _ => return Err(ServiceError::Unauthorized("invalid username or password".into())),
        };
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
            created_at: crate::db::now(),
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
    let email_ok = u.email.len() <= 100
        && u.email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !u.email.chars().any(char::is_whitespace);
    if !email_ok {
        return Err(ServiceError::Invalid("email must be a valid address of at most 100 characters".into()));
    }
    // BCrypt reads at most 72 bytes; a longer password would be silently truncated.
    if !(8..=72).contains(&u.password.len()) {
        return Err(ServiceError::Invalid("password must be 8 to 72 bytes long".into()));
    }
    Ok(())
}

/// The JWT secret of embedded mode when none is configured: made once, kept in `path`, so that
/// tokens stay valid across restarts.
pub fn load_or_create_secret(path: &std::path::Path) -> ServiceResult<Secret> {
    use rand::Rng;
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(Secret::new(s.trim())),
        Ok(_) => return Err(ServiceError::Invalid(format!("{} holds too short a secret", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ServiceError::Internal(format!("reading {}: {e}", path.display()))),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(path, &secret)
        .map_err(|e| ServiceError::Internal(format!("writing {}: {e}", path.display())))?;
    Ok(Secret::new(secret))
}
