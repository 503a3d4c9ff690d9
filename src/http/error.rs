//! The API's error contract: every error is
//! `{"error": {"code": "...", "message": "...", "fields"?: {...}}}` with the
//! status its variant names. Internal details are logged, never sent.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; `fields` says what is wrong with which
    /// field.
    #[error("{message}")]
    BadRequest {
        message: String,
        fields: BTreeMap<String, String>,
    },
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 503: the log or the database cannot be reached right now.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure. The detail is logged; the client
    /// sees a generic message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
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
            other => other.to_string(),
        };
        let mut error = json!({ "code": self.code(), "message": message });
        if let ApiError::BadRequest { fields, .. } = &self
            && !fields.is_empty()
        {
            error["fields"] = json!(fields);
        }
        (status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Unavailable { .. } => ApiError::Unavailable(error.to_string()),
            LogError::InvalidRequest(message) => ApiError::bad_request(message),
            LogError::Failed { .. } => ApiError::Internal(anyhow::Error::new(error)),
        }
    }
}

/// The router's fallback: unknown routes get the JSON 404, not an empty body.
pub async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
