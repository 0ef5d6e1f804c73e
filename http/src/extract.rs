//! Extractors whose rejections are [`ApiError`]s, and the bearer-token caller.

use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequest, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use shop_services::auth::{Claims, JwtKeys, Role};
use shop_services::order::IdempotencyKey;

use crate::error::ApiError;

/// `axum::Json`, but a malformed body gets the same problem+json as every other error.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Path`, with problem+json rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query`, with problem+json rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The authenticated caller, from `Authorization: Bearer <JWT>`.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    pub fn username(&self) -> &str {
        &self.0.sub
    }

    /// Refuses (403) a caller whose role is not among `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            let wanted: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!("this needs role {}", wanted.join(" or "))))
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token> header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer <token>'"))?;
        Ok(Caller(JwtKeys::from_ref(state).verify(token)?))
    }
}

/// The roles an [`Authorized`] caller may have.
pub trait Roles: Send + Sync + 'static {
    const ROLES: &'static [Role];
}

/// ADMIN only.
pub enum AdminOnly {}
/// Another service only (a SERVICE token made for this one).
pub enum ServiceOnly {}

impl Roles for AdminOnly {
    const ROLES: &'static [Role] = &[Role::Admin];
}
impl Roles for ServiceOnly {
    const ROLES: &'static [Role] = &[Role::Service];
}

/// A caller whose role is among `R::ROLES` (403 otherwise). Put it before the path, query and
/// body extractors: the role is checked first, so that a caller without it is refused before
/// anything it sent is read, and learns nothing of what the endpoint takes.
pub struct Authorized<R>(pub Caller, PhantomData<R>);

impl<R> std::ops::Deref for Authorized<R> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl<S, R: Roles> FromRequestParts<S> for Authorized<R>
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(R::ROLES)?;
        Ok(Self(caller, PhantomData))
    }
}

/// The optional `Idempotency-Key` header, checked by [`IdempotencyKey::parse`] (400 otherwise).
#[derive(Debug, Clone)]
pub struct IdempotencyKeyHeader(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get("idempotency-key") {
            Some(value) => Ok(Self(Some(IdempotencyKey::parse(value.as_bytes())?))),
            None => Ok(Self(None)),
        }
    }
}

/// A numeric id in a path: `12`, or `12.0`, which an OpenAPI `integer` admits too.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub i64);

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        if let Ok(id) = text.parse::<i64>() {
            return Ok(Id(id));
        }
        match text.split_once('.') {
            Some((int, fraction)) if fraction.chars().all(|c| c == '0') => int
                .parse::<i64>()
                .map(Id)
                .map_err(|_| D::Error::custom(format!("Cannot parse `{text}` to an id"))),
            _ => Err(D::Error::custom(format!("Cannot parse `{text}` to an id"))),
        }
    }
}
