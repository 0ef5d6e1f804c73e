//! Tokens: HS256 JWTs signed with the deployment's secret, and the secret itself.
//!
//! Two kinds of token are signed, and each service accepts only the two meant for it:
//! - a **user token**, handed out by Auth at login: issuer [`USER_ISSUER`], audience
//!   [`USER_AUDIENCE`] (the public API), role USER or ADMIN, valid for the configured time;
//! - a **service token**, made by a service for each call to a peer (Order → Cart, Product,
//!   Payment; Cart → Product): issuer `shop-<caller>`, audience `shop-<callee>`, role SERVICE,
//!   valid for [`SERVICE_TOKEN_TTL`]. A token Order made for Payment is refused by Cart.
//!
//! Every token must carry `iss`, `aud`, `sub`, `iat` and `exp`; only HS256 is accepted (so
//! `alg: none` and a switched algorithm are refused), with [`LEEWAY_SECS`] of clock leeway on
//! `exp` and `iat`. Any failure is a 401.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Role;
use crate::error::{ServiceError, ServiceResult};
use crate::service::Service;

/// The issuer of user tokens: the Auth service.
pub const USER_ISSUER: &str = "shop-auth";
/// The audience of user tokens: the public API of the services.
pub const USER_AUDIENCE: &str = "shop-api";
/// How long a service token lives: one call, with room for retries.
pub const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Clock difference tolerated between the services, on `exp` and `iat`.
pub const LEEWAY_SECS: u64 = 5;
/// The shortest secret distributed mode accepts (HS256 wants at least its 256-bit output).
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The username, or `<service>-service` for a service token.
    pub sub: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

/// The issuer or audience name of a service: `shop-<name>`.
pub fn service_principal(service: Service) -> &'static str {
    match service {
        Service::Auth => "shop-auth",
        Service::Product => "shop-product",
        Service::Cart => "shop-cart",
        Service::Payment => "shop-payment",
        Service::Order => "shop-order",
    }
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

/// Signs tokens, and checks them for one service ([`JwtKeys::for_service`]).
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Arc<Validation>,
    /// The service whose tokens `verify` accepts; `None` accepts user tokens only.
    audience: Option<Service>,
    ttl: Duration,
}

impl JwtKeys {
    /// Keys signing with `secret`; user tokens live `ttl`.
    pub fn new(secret: &Secret, ttl: Duration) -> ServiceResult<Self> {
        let bytes = secret.expose().as_bytes();
        let invalid = |e: jsonwebtoken::errors::Error| ServiceError::Invalid(format!("the JWT secret: {e}"));
        Ok(Self {
            encoding: EncodingKey::from_secret(bytes).map_err(invalid)?,
            decoding: DecodingKey::from_secret(bytes).map_err(invalid)?,
            validation: Arc::new(validation(None)),
            audience: None,
            ttl,
        })
    }

    /// The same keys, checking tokens as `service` does: user tokens and service tokens made for it.
    pub fn for_service(&self, service: Service) -> Self {
        Self { validation: Arc::new(validation(Some(service))), audience: Some(service), ..self.clone() }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A user token for `username` with `role`.
    pub fn issue(&self, username: &str, role: Role) -> ServiceResult<String> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        self.sign(&Claims {
            iss: USER_ISSUER.into(),
            aud: USER_AUDIENCE.into(),
            sub: username.to_owned(),
            role,
            iat: now,
            exp: now.saturating_add(ttl),
        })
    }

    /// A short-lived token for one call from `caller` to `callee`.
    pub fn issue_service(&self, caller: Service, callee: Service) -> ServiceResult<String> {
        let now = Utc::now().timestamp();
        self.sign(&Claims {
            iss: service_principal(caller).into(),
            aud: service_principal(callee).into(),
            sub: format!("{}-service", caller.name()),
            role: Role::Service,
            iat: now,
            exp: now + SERVICE_TOKEN_TTL.as_secs() as i64,
        })
    }

    pub fn sign(&self, claims: &Claims) -> ServiceResult<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| ServiceError::Internal(format!("signing a token: {e}")))
    }

    pub fn verify(&self, token: &str) -> ServiceResult<Claims> {
        use jsonwebtoken::errors::ErrorKind;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                ServiceError::Unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                    ErrorKind::InvalidSignature => "the token's signature is not valid".to_owned(),
                    ErrorKind::InvalidAudience => "the token is not meant for this service".to_owned(),
                    ErrorKind::InvalidIssuer => "the token's issuer is not accepted".to_owned(),
                    ErrorKind::MissingRequiredClaim(c) => format!("the token has no '{c}' claim"),
                    _ => format!("the token is not valid: {e}"),
                })
            })?;
        let refuse = |why: &str| Err(ServiceError::Unauthorized(why.to_owned()));
        if claims.iat > Utc::now().timestamp() + LEEWAY_SECS as i64 {
            return refuse("the token was issued in the future");
        }
        // The issuer and audience must fit the role: a user token comes from Auth for the public
        // API; a SERVICE token from a service, for this one.
        let user_token = claims.iss == USER_ISSUER && claims.aud == USER_AUDIENCE;
        let service_token =
            self.audience.is_some_and(|me| claims.aud == service_principal(me)) && claims.iss != USER_ISSUER;
        match claims.role {
            Role::User | Role::Admin if user_token => Ok(claims),
            Role::Service if service_token => Ok(claims),
            _ => refuse("the token's issuer and audience do not fit its role"),
        }
    }
}

/// HS256 only; `iss`, `aud`, `sub` and `exp` required (and `iat`, by [`Claims`]).
fn validation(me: Option<Service>) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    let mut audiences = vec![USER_AUDIENCE];
    audiences.extend(me.map(service_principal));
    validation.set_audience(&audiences);
    let issuers: Vec<_> = Service::ALL.into_iter().map(service_principal).collect();
    validation.set_issuer(&issuers);
    validation
}

/// Refuses a secret too short to sign with in distributed mode.
pub fn check_secret_strength(secret: &Secret) -> ServiceResult<()> {
    let len = secret.expose().len();
    if len < MIN_SECRET_BYTES {
        return Err(ServiceError::Invalid(format!(
            "SHOP_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long (this one has {len})"
        )));
    }
    Ok(())
}

/// The JWT secret of embedded mode when none is configured: made once, kept in `path`, so that
/// tokens stay valid across restarts.
pub fn load_or_create_secret(path: &std::path::Path) -> ServiceResult<Secret> {
    use rand::Rng;
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= MIN_SECRET_BYTES => return Ok(Secret::new(s.trim())),
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keys() -> JwtKeys {
        JwtKeys::new(&Secret::new(SECRET), Duration::from_secs(3600)).expect("keys")
    }

    fn claims(role: Role) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            iss: USER_ISSUER.into(),
            aud: USER_AUDIENCE.into(),
            sub: "ann".into(),
            role,
            iat: now,
            exp: now + 60,
        }
    }

    fn unsigned(header: &str, payload: &serde_json::Value) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.", b64.encode(header), b64.encode(payload.to_string()))
    }

    #[test]
    fn a_user_token_is_accepted_by_every_service_and_a_service_token_only_by_its_callee() {
        let keys = keys();
        let user = keys.issue("ann", Role::User).expect("token");
        for service in Service::ALL {
            assert_eq!(keys.for_service(service).verify(&user).expect("user token").sub, "ann");
        }
        let to_payment = keys.issue_service(Service::Order, Service::Payment).expect("token");
        let claims = keys.for_service(Service::Payment).verify(&to_payment).expect("service token");
        assert_eq!((claims.role, claims.iss.as_str()), (Role::Service, "shop-order"));
        assert!(claims.exp - claims.iat <= SERVICE_TOKEN_TTL.as_secs() as i64);
        for other in [Service::Auth, Service::Product, Service::Cart, Service::Order] {
            assert!(
                matches!(keys.for_service(other).verify(&to_payment), Err(ServiceError::Unauthorized(_))),
                "{other:?} accepted a token for Payment"
            );
        }
    }

    #[test]
    fn forged_tampered_and_misdirected_tokens_are_refused() {
        let keys = keys();
        let cart = keys.for_service(Service::Cart);
        let now = Utc::now().timestamp();
        let good = keys.issue("ann", Role::User).expect("token");
        let (head_payload, signature) = good.rsplit_once('.').expect("three parts");
        let mut flipped = signature.to_owned().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let theirs =
            JwtKeys::new(&Secret::new("another deployment's secret, 32+ bytes"), Duration::from_secs(60))
                .expect("keys");
        let admin_payload = {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let (head, _) = head_payload.split_once('.').expect("header");
            let body = serde_json::to_string(&claims(Role::Admin)).expect("json");
            format!("{head}.{}.{signature}", b64.encode(body))
        };
        let with = |edit: &dyn Fn(&mut Claims)| {
            let mut c = claims(Role::User);
            edit(&mut c);
            keys.sign(&c).expect("sign")
        };
        let cases: Vec<(&str, String)> = vec![
            (
                "alg none",
                unsigned(
                    r#"{"alg":"none","typ":"JWT"}"#,
                    &serde_json::to_value(claims(Role::Admin)).expect("json"),
                ),
            ),
            ("tampered signature", format!("{head_payload}.{}", String::from_utf8_lossy(&flipped))),
            ("tampered payload", admin_payload),
            ("another deployment's secret", theirs.issue("ann", Role::Admin).expect("token")),
            (
                "switched algorithm",
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS512),
                    &claims(Role::User),
                    &EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
                )
                .expect("token"),
            ),
            ("expired", with(&|c| c.exp = now - 3600)),
            ("issued in the future", with(&|c| c.iat = now + 3600)),
            ("wrong issuer", with(&|c| c.iss = "someone-else".into())),
            ("wrong audience", with(&|c| c.aud = "shop-elsewhere".into())),
            ("a service's audience on a user token", with(&|c| c.aud = "shop-cart".into())),
            ("a SERVICE role from the user issuer", with(&|c| c.role = Role::Service)),
            ("a token for Payment", keys.issue_service(Service::Order, Service::Payment).expect("token")),
            (
                "missing exp",
                unsigned_signed(
                    &keys,
                    serde_json::json!({"iss": USER_ISSUER, "aud": USER_AUDIENCE, "sub": "ann", "role": "USER", "iat": now}),
                ),
            ),
            (
                "missing aud",
                unsigned_signed(
                    &keys,
                    serde_json::json!({"iss": USER_ISSUER, "sub": "ann", "role": "USER", "iat": now, "exp": now + 60}),
                ),
            ),
            (
                "missing iat",
                unsigned_signed(
                    &keys,
                    serde_json::json!({"iss": USER_ISSUER, "aud": USER_AUDIENCE, "sub": "ann", "role": "USER", "exp": now + 60}),
                ),
            ),
            ("garbage", "not.a.token".into()),
        ];
        for (what, token) in cases {
            assert!(matches!(cart.verify(&token), Err(ServiceError::Unauthorized(_))), "{what} was accepted");
        }
        assert!(cart.verify(&good).is_ok(), "the untouched token is accepted");
    }

    /// Signs arbitrary JSON claims (some missing) with `keys`' secret.
    fn unsigned_signed(keys: &JwtKeys, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).expect("token")
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(check_secret_strength(&Secret::new("short")).is_err());
        assert!(check_secret_strength(&Secret::new(SECRET)).is_ok());
    }
}
