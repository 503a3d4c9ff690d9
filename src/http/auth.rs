//! `/api/auth/*`: register, log in, refresh, log out, who am I.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorResponse;
use super::extract::{ApiJson, AuthUser, ClientIp};
use super::openapi::tags;
use super::{ApiError, AppState};
use crate::events::AuthAction;
use crate::identity::accounts::{self, Account, IdentityError, LockoutTarget, SessionTokens};
use crate::identity::passwords::HashingSlot;
use crate::identity::tokens::RefreshToken;
use crate::identity::values::{DisplayName, Email, Password};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

/// Missing fields are reported, each by name, as a 400 (not as a
/// deserialization error), hence the defaults.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest {
    #[serde(default)]
    #[schema(required = true, format = Email, max_length = 254)]
    email: String,
    #[serde(default)]
    #[schema(required = true, min_length = 8, max_length = 128)]
    password: String,
    #[serde(default)]
    /// Something besides spaces, no control characters (`DisplayName`).
    #[schema(
        required = true,
        min_length = 1,
        max_length = 50,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    display_name: String,
}

/// Any email and password are tried (an impossible email is just an
/// unknown one), but neither may be empty.
#[derive(Deserialize, ToSchema)]
struct LoginRequest {
    #[serde(default)]
    #[schema(required = true, min_length = 1, pattern = r"\S")]
    email: String,
    #[serde(default)]
    #[schema(required = true, min_length = 1)]
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RefreshRequest {
    #[serde(default)]
    #[schema(required = true, min_length = 1)]
    refresh_token: String,
}

/// A user and a fresh token pair.
#[derive(Serialize, ToSchema)]
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

#[derive(Serialize, ToSchema)]
struct UserResponse {
    user: Account,
}

/// Creates an account (a STUDENT) and logs it in.
#[utoipa::path(
    post,
    path = "/api/auth/register",
    tag = tags::AUTH,
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered and logged in", body = AuthResponse),
        (status = 400, description = "Invalid fields, each named in `fields`, or malformed JSON", body = ErrorResponse),
        (status = 409, description = "The email is taken", body = ErrorResponse),
        (status = 413, description = "The body is over 64 KiB", body = ErrorResponse),
        (status = 415, description = "The body is not JSON", body = ErrorResponse),
        (status = 429, description = "Too many registrations for this email or from this address", body = ErrorResponse, headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "The database is unavailable, or password hashing is at capacity", body = ErrorResponse, headers(("Retry-After" = u64, description = "Seconds to wait before trying again (when hashing is at capacity)"))),
    ),
)]
async fn register(
    State(state): State<AppState>,
    client: ClientIp,
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
    let hashing = admit_then_throttle(
        &state,
        AuthAction::Register,
        client,
        LockoutTarget::Email(email.as_str()),
    )
    .await?;
    let password_hash = hashing
        .hash_password(password)
        .await
        .map_err(IdentityError::from)?;
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

/// Logs in; unknown email and wrong password get the same 401.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = tags::AUTH,
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = AuthResponse),
        (status = 400, description = "A field is missing, or malformed JSON", body = ErrorResponse),
        (status = 401, description = "Wrong email or password", body = ErrorResponse),
        (status = 413, description = "The body is over 64 KiB", body = ErrorResponse),
        (status = 415, description = "The body is not JSON", body = ErrorResponse),
        (status = 429, description = "Too many attempts for this email from this address, or from this address", body = ErrorResponse, headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "The database is unavailable, or password hashing is at capacity", body = ErrorResponse, headers(("Retry-After" = u64, description = "Seconds to wait before trying again (when hashing is at capacity)"))),
    ),
)]
async fn login(
    State(state): State<AppState>,
    client: ClientIp,
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
    // Keyed by the email as typed, never by whether it has an account, so
    // an unknown email is throttled exactly like a known one.
    let hashing = admit_then_throttle(
        &state,
        AuthAction::Login,
        client,
        LockoutTarget::Email(&request.email),
    )
    .await?;
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
    let password_matches = hashing
        .verify_password(request.password, stored_hash)
        .await
        .map_err(IdentityError::from)?;
    let Some(account) = account.filter(|_| password_matches) else {
        return Err(IdentityError::InvalidCredentials.into());
    };
    let tokens = accounts::log_in(&state.pool, &state.jwt, &account, &client.to_string()).await?;
    Ok(Json(AuthResponse::new(account, tokens)))
}

/// Trades a refresh token for a new pair. Each refresh token works once —
/// presented again within a few seconds (two tabs at once) it gets the same
/// new token again; after that, a reused one revokes its session.
#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    tag = tags::AUTH,
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = AuthResponse),
        (status = 400, description = "refreshToken is missing, or malformed JSON", body = ErrorResponse),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token", body = ErrorResponse),
        (status = 413, description = "The body is over 64 KiB", body = ErrorResponse),
        (status = 415, description = "The body is not JSON", body = ErrorResponse),
        (status = 429, description = "Too many attempts with this token from this address, or from this address", body = ErrorResponse, headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "The database is unavailable", body = ErrorResponse),
    ),
)]
async fn refresh(
    State(state): State<AppState>,
    client: ClientIp,
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
    throttle(
        &state,
        AuthAction::Refresh,
        client,
        LockoutTarget::RefreshToken(&presented),
    )
    .await?;
    let (user, tokens) =
        accounts::refresh(&state.pool, &state.jwt, &presented, &client.to_string()).await?;
    Ok(Json(AuthResponse::new(user, tokens)))
}

/// A place in the hashing pool, then the throttle: when the pool is full the
/// attempt is refused (503) before it costs the database anything, and
/// before it is counted — a client told 503 has not spent its budget.
async fn admit_then_throttle(
    state: &AppState,
    action: AuthAction,
    client: ClientIp,
    target: LockoutTarget<'_>,
) -> Result<HashingSlot, ApiError> {
    let hashing = state
        .auth_limits
        .hashing
        .admit()
        .map_err(IdentityError::from)?;
    throttle(state, action, client, target).await?;
    Ok(hashing)
}

/// Counts one attempt of `action` from `client`, or refuses it with 429.
/// The first refusal of a lockout records it on `auth-events`; if that
/// fails, the next refusal records it instead (the 429 is answered anyway).
async fn throttle(
    state: &AppState,
    action: AuthAction,
    client: ClientIp,
    target: LockoutTarget<'_>,
) -> Result<(), ApiError> {
    let account = match target {
        LockoutTarget::Email(email) => email,
        LockoutTarget::RefreshToken(token) => token.as_str(),
    };
    let limits = &state.auth_limits.throttle;
    let Err(throttled) = limits.check(action, client.address(), account) else {
        return Ok(());
    };
    if throttled.lockout_started {
        // Within the database deadline: a 429 is answered at once even when
        // the database is slow, and an unrecorded lockout is recorded by
        // the next refusal.
        let recorded = tokio::time::timeout(
            state.deadlines.database,
            accounts::record_lockout(
                &state.pool,
                action,
                throttled.scope,
                &client.to_string(),
                target,
                throttled.retry_after.as_secs(),
            ),
        )
        .await
        .unwrap_or(Err(IdentityError::Database(sqlx::Error::PoolTimedOut)));
        if let Err(error) = recorded {
            tracing::warn!(%error, "a lockout could not be recorded; the next refusal will");
            limits.forget_lockout(action, client.address(), account, throttled.scope);
        }
    }
    Err(ApiError::TooManyRequests {
        message: "too many attempts; try again later".into(),
        retry_after: throttled.retry_after,
    })
}

/// Ends the session of the access token.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = tags::AUTH,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 503, description = "The database is unavailable", body = ErrorResponse),
    ),
)]
async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, ApiError> {
    accounts::log_out(&state.pool, user.user_id, user.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(
    get,
    path = "/api/auth/me",
    tag = tags::AUTH,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserResponse),
        (status = 401, description = "No valid access token, or the account is gone", body = ErrorResponse),
        (status = 503, description = "The database is unavailable", body = ErrorResponse),
    ),
)]
async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<UserResponse>, ApiError> {
    let account = accounts::find_account(&state.pool, user.user_id).await?;
    Ok(Json(UserResponse { user: account }))
}
