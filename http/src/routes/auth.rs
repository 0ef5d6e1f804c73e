use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shop_services::auth::{AuthService, JwtKeys, LoginResponse, NewUser, User};

use crate::error::ApiResult;
use crate::extract::{ApiJson, Caller};

#[derive(Clone, FromRef)]
pub struct AuthState {
    pub auth: AuthService,
    pub keys: JwtKeys,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    username: String,
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

pub fn router(state: AuthState) -> Router {
    let routes = Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/me", get(me));
    super::finish("auth", routes, state)
}

async fn register(
    State(auth): State<AuthService>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let user =
        auth.register(NewUser { username: req.username, email: req.email, password: req.password }).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn login(
    State(auth): State<AuthService>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    Ok(Json(auth.login(&req.username, &req.password).await?))
}

async fn me(State(auth): State<AuthService>, caller: Caller) -> ApiResult<Json<User>> {
    Ok(Json(auth.find(caller.username()).await?))
}
