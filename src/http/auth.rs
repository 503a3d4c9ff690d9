//! `/api/auth/*`: register, log in, refresh, log out, who am I.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, AuthUser, ClientIp};
use super::{ApiError, AppState};
use crate::identity::accounts::{self, Account, IdentityError, SessionTokens};
use crate::identity::passwords::{hash_password, verify_password};
use crate::identity::tokens::RefreshToken;
use crate::identity::values::{DisplayName, Email, Password};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    display_name: String,
}

#[derive(Deserialize)]
struct LoginRequest {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshRequest {
    #[serde(default)]
    refresh_token: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthResponse {
    user: Account,
    access_token: String,
    refresh_token: String,
}

impl AuthResponse {
    fn new(user: Account, tokens: SessionTokens) -> Self {
        AuthResponse {
            user,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token.as_str().to_owned(),
        }
    }
}

#[derive(Serialize)]
struct UserResponse {
    user: Account,
}

async fn register(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<AuthResponse>), ApiError> {
    let mut fields = BTreeMap::new();
    let email = Email::parse(&request.email)
        .map_err(|e| fields.insert("email".into(), e))
        .ok();
    let password = Password::parse(&request.password)
        .map_err(|e| fields.insert("password".into(), e))
        .ok();
    let display_name = DisplayName::parse(&request.display_name)
        .map_err(|e| fields.insert("displayName".into(), e))
        .ok();
    let (Some(email), Some(password), Some(display_name)) = (email, password, display_name) else {
        return Err(ApiError::invalid_fields(fields));
    };
    let password_hash = hash_password(password).await?;
    let (user, tokens) = accounts::register(
        &state.pool,
        &state.jwt,
        &email,
        &display_name,
        &password_hash,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(AuthResponse::new(user, tokens))))
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<AuthResponse>, ApiError> {
    let mut fields = BTreeMap::new();
    if request.email.trim().is_empty() {
        fields.insert("email".into(), "email is required".into());
    }
    if request.password.is_empty() {
        fields.insert("password".into(), "password is required".into());
    }
    if !fields.is_empty() {
        return Err(ApiError::invalid_fields(fields));
    }
    // An email no account can have (e.g. with a NUL, which PostgreSQL
    // cannot even compare) is just an unknown email.
    let found = if Email::parse(&request.email).is_ok() {
        accounts::find_credentials(&state.pool, &request.email).await?
    } else {
        None
    };
    let (account, stored_hash) = match found {
        Some((account, hash)) => (Some(account), Some(hash)),
        None => (None, None),
    };
    // Verified even for an unknown email (against a dummy hash), so both
    // failures take as long and read the same.
    let password_matches = verify_password(request.password, stored_hash).await?;
    let Some(account) = account.filter(|_| password_matches) else {
        return Err(IdentityError::InvalidCredentials.into());
    };
    let tokens = accounts::log_in(&state.pool, &state.jwt, &account, &ip).await?;
    Ok(Json(AuthResponse::new(account, tokens)))
}

async fn refresh(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<AuthResponse>, ApiError> {
    if request.refresh_token.is_empty() {
        let fields = BTreeMap::from([(
            "refreshToken".to_owned(),
            "refreshToken is required".to_owned(),
        )]);
        return Err(ApiError::invalid_fields(fields));
    }
    let presented = RefreshToken::from_client(request.refresh_token);
    let (user, tokens) = accounts::refresh(&state.pool, &state.jwt, &presented).await?;
    Ok(Json(AuthResponse::new(user, tokens)))
}

async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, ApiError> {
    accounts::log_out(&state.pool, user.user_id, user.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<UserResponse>, ApiError> {
    let account = accounts::find_account(&state.pool, user.user_id).await?;
    Ok(Json(UserResponse { user: account }))
}
