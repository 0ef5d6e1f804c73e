use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use serde::Deserialize;
use shop_services::auth::{AuthService, JwtKeys, LoginResponse, NewUser, User};

use crate::error::ApiResult;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::{ApiJson, Caller};
use crate::limits::{ClientAddr, TrustedProxies};
use crate::openapi::{self, *};

#[derive(Clone, FromRef)]
pub struct AuthState {
    pub auth: AuthService,
    pub keys: JwtKeys,
    pub trusted: TrustedProxies,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    #[schema(pattern = r"^[A-Za-z0-9_.-]{3,50}$", example = "ann")]
    username: String,
    #[schema(
        max_length = 100,
        pattern = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-][A-Za-z0-9.-]*\.[A-Za-z0-9.-]*[A-Za-z0-9-]$",
        example = "ann@example.com"
    )]
    email: String,
    /// 8 to 72 bytes (bcrypt reads no more).
    #[schema(min_length = 8, max_length = 72, example = "password123")]
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

pub(crate) fn router(state: AuthState, ops: crate::ops::Ops) -> Router {
    let routes = OpenApiRouter::with_openapi(openapi::base("auth", "Accounts and JWT login."))
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(me));
    super::finish("auth", routes, state, ops)
}

/// Makes an account with role USER.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, description = "The new user.", body = User),
    (status = 400, response = BadRequest), (status = 408, response = RequestTimeout),
    (status = 409, response = Conflict),
    (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
    (status = 429, response = TooManyRequests), (status = 503, response = Unavailable),
))]
async fn register(
    State(auth): State<AuthService>,
    ClientAddr(from): ClientAddr,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let new = NewUser { username: req.username, email: req.email, password: req.password };
    let user = auth.register(new, from).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Checks a password and hands out a bearer token.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, description = "A bearer token.", body = LoginResponse),
    (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
    (status = 408, response = RequestTimeout),
    (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
    (status = 429, response = TooManyRequests), (status = 503, response = Unavailable),
))]
async fn login(
    State(auth): State<AuthService>,
    ClientAddr(from): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    Ok(Json(auth.login(&req.username, &req.password, from).await?))
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, description = "The caller.", body = User),
    (status = 401, response = Unauthorized), (status = 404, response = NotFound),
    (status = 503, response = Unavailable),
))]
async fn me(State(auth): State<AuthService>, caller: Caller) -> ApiResult<Json<User>> {
    Ok(Json(auth.find(caller.username()).await?))
}
