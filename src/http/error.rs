//! The API's error contract, for every route: each error is
//! `{"error": {"code": "...", "message": "...", "fields"?: {...}, "rule"?: "..."}}`
//! with the status its variant names. This is the one place errors become
//! responses; internal details are logged, never sent. (Which status and
//! code each domain rule maps to is decided in one place too:
//! `command_error` in `incidents.rs`.)

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::identity::IdentityError;
use crate::identity::passwords::HashingError;
use crate::incident::Rule;
use crate::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or invalid; `fields` maps each bad
    /// field to what is wrong with it.
    #[error("{message}")]
    BadRequest {
        message: String,
        fields: BTreeMap<String, String>,
    },
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// A command the domain refused: the named `rule`, answered with the
    /// status of `code` (400, 403, 404 or 409).
    #[error("{message}")]
    Rejected {
        code: ErrorCode,
        rule: Rule,
        message: String,
    },
    /// 409: a request with the same `Idempotency-Key` is still being
    /// processed; retrying it with that key is safe.
    #[error("{0}")]
    KeyInFlight(String),
    /// 422: the `Idempotency-Key` already took effect for a different
    /// request.
    #[error("{0}")]
    KeyReused(String),
    /// 413: the body is larger than the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503: the log or the database cannot be reached right now. Nothing
    /// took effect.
    #[error("{0}")]
    Unavailable(String),
    /// 503: the command's event may have been appended, but the log could
    /// not confirm it in time. Retrying with the same `Idempotency-Key` is
    /// safe: it takes effect at most once.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// 429: too many attempts at a credential endpoint; `Retry-After` says
    /// when to try again.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: Duration,
    },
    /// 503 with `Retry-After`: password hashing is at capacity; refused at
    /// once instead of queued.
    #[error("the service is busy; try again shortly")]
    Overloaded { retry_after: Duration },
    /// 503 with `Retry-After`: the database was found down, so a request
    /// that needs it is refused at once (its circuit breaker is open).
    /// Nothing took effect.
    #[error("the database is down, so this request was refused without trying it; try again in {}s", retry_after.as_secs().max(1))]
    DatabaseDown { retry_after: Duration },
    /// 500: a bug or an unexpected failure. The detail is logged; the client
    /// sees a generic message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The body of every error response: `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For a person to read; may change between versions (`code` does not).
    pub message: String,
    /// Only on a 400 about particular fields: each bad field's name and what
    /// is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub fields: Option<BTreeMap<String, String>>,
    /// Only when the domain refused a command: the rule that refused it,
    /// stable like `code` (several rules share a code; e.g. `forbidden`
    /// for `lowering_severity_needs_staff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub rule: Option<Rule>,
}

/// The stable, machine-readable kind of an error, one per status
/// ([`ErrorCode::status`]), and a few more where a client should act
/// differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    /// 409: the same `Idempotency-Key` is still being processed; retry.
    IdempotencyKeyInFlight,
    /// 422: the `Idempotency-Key` was used for a different request.
    IdempotencyKeyReused,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unavailable,
    /// 503: the command may have taken effect; retry with the same
    /// `Idempotency-Key` (safe: at most once).
    OutcomeUnknown,
    Internal,
    TooManyRequests,
}

impl ErrorCode {
    /// The one status each code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict | ErrorCode::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            ErrorCode::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unavailable | ErrorCode::OutcomeUnknown => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// Seconds a client should wait before retrying a 503 (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    /// A 400 naming what is wrong with each field.
    pub fn invalid_fields(fields: BTreeMap<String, String>) -> Self {
        ApiError::BadRequest {
            message: "the request has invalid fields".into(),
            fields,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// A stable, machine-readable code per variant.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest { .. } => ErrorCode::BadRequest,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::Rejected { code, .. } => *code,
            ApiError::KeyInFlight(_) => ErrorCode::IdempotencyKeyInFlight,
            ApiError::KeyReused(_) => ErrorCode::IdempotencyKeyReused,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
            ApiError::Internal(_) => ErrorCode::Internal,
            ApiError::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            ApiError::Overloaded { .. } | ApiError::DatabaseDown { .. } => ErrorCode::Unavailable,
        }
    }

    /// How long the client should wait before trying again, sent as
    /// `Retry-After` (whole seconds).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Overloaded { retry_after }
            | ApiError::DatabaseDown { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(error) => {
                tracing::error!(error = ?error, "internal error");
                "something went wrong on our side; it has been logged".to_owned()
            }
            ApiError::Unavailable(reason) => {
                tracing::warn!(%reason, "answering 503");
                "the service is temporarily unavailable; try again shortly".to_owned()
            }
            ApiError::OutcomeUnknown(reason) => {
                tracing::warn!(%reason, "answering 503: outcome unknown");
                "the command may or may not have taken effect: the log did not confirm it in time. \
                 Retrying with the same Idempotency-Key is safe"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let code = self.code();
        let retry_after = self.retry_after();
        let (fields, rule) = match self {
            ApiError::BadRequest { fields, .. } if !fields.is_empty() => (Some(fields), None),
            ApiError::Rejected { rule, .. } => (None, Some(rule)),
            _ => (None, None),
        };
        let body = ErrorResponse {
            error: ErrorDetail {
                code,
                message,
                fields,
                rule,
            },
        };
        let mut response = (status, Json(body)).into_response();
        // Its own wait (a throttle's, the hashing pool's), or the one every
        // other 503 has.
        let wait_seconds = retry_after
            .map(|wait| wait.as_secs().max(1))
            .or((status == StatusCode::SERVICE_UNAVAILABLE)
                .then_some(u64::from(RETRY_AFTER_SECONDS)));
        if let Some(seconds) = wait_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Unavailable { .. }
            | LogError::Unreachable { .. }
            | LogError::Inconsistent { .. } => ApiError::Unavailable(error.to_string()),
            LogError::InvalidRequest(message) => ApiError::bad_request(message),
            LogError::Failed { .. } => ApiError::Internal(anyhow::Error::new(error)),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => ApiError::Unavailable(format!("database: {error}")),
            other => ApiError::Internal(anyhow::Error::new(other).context("database query failed")),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::EmailTaken => ApiError::Conflict(error.to_string()),
            IdentityError::InvalidCredentials
            | IdentityError::InvalidRefreshToken
            | IdentityError::RefreshTokenReused
            | IdentityError::UnknownUser => ApiError::Unauthorized(error.to_string()),
            IdentityError::UnknownEmail(_) => ApiError::NotFound(error.to_string()),
            IdentityError::Database(error) => ApiError::from(error),
            IdentityError::Hashing(HashingError::Overloaded { retry_after }) => {
                ApiError::Overloaded { retry_after }
            }
            IdentityError::Hashing(HashingError::Failed(error)) => ApiError::Internal(error),
            IdentityError::Internal(error) => ApiError::Internal(error),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "the body must be JSON (Content-Type: application/json)".into(),
            ),
            JsonRejection::JsonSyntaxError(error) => {
                ApiError::bad_request(format!("malformed JSON: {}", error.body_text()))
            }
            JsonRejection::JsonDataError(error) => ApiError::bad_request(error.body_text()),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge("the request body is too large".into())
            }
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// The router's fallback: unknown routes get the JSON 404, not an empty body.
pub async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// A known route called with a method it does not have.
pub async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
