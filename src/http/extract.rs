//! Extractors that turn a request into trusted values or an [`ApiError`]:
//! JSON bodies, the authenticated user, the client's address, the
//! `Idempotency-Key` of a command.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use crate::domain::Role;
use crate::idempotency::IdempotencyKey;
use crate::identity::tokens::TokenError;

/// A JSON object body (as `axum::Json`), with rejections that follow the
/// error contract (400, 413, 415).
///
/// Every body of the API is an object. A JSON *array* is refused even
/// though serde would fill a struct from it field by field (`[null, null]`
/// as an update); anything else that is not an object fails to
/// deserialize anyway.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be JSON (Content-Type: application/json)".into(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge("the request body is too large".into())
                } else {
                    ApiError::bad_request(rejection.body_text())
                }
            })?;
        if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::bad_request(
                "the body must be a JSON object, not an array",
            ));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}

/// `application/json`, with parameters or without, or any `application/*+json`
/// — what `axum::Json` accepts.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
}

/// A UUID in its hyphenated form (8-4-4-4-12 hex digits), the one form the
/// API document's `format: uuid` and `pattern` describe. (`Uuid::parse_str`
/// also takes 32 bare digits, braces and `urn:uuid:`; a value the document
/// calls invalid must not be accepted.)
pub fn parse_uuid(raw: &str) -> Option<uuid::Uuid> {
    (raw.len() == 36)
        .then(|| uuid::Uuid::try_parse(raw).ok())
        .flatten()
}

/// `axum::extract::Query` whose rejections follow the error contract (400).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` whose rejections follow the error contract (400).
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// The caller, from a valid `Authorization: Bearer <access token>`.
/// Extracting it is what makes a route require authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: uuid::Uuid,
    pub role: Role,
    pub session_id: uuid::Uuid,
}

impl AuthUser {
    /// 403 unless the caller has at least `role`.
    pub fn require_role(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this requires the {role} role or above"
            )))
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("missing Authorization: Bearer <access token>".into())
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the Authorization header must be 'Bearer <access token>'".into(),
                )
            })?;
        let claims = state
            .jwt
            .verify_access_token(token)
            .map_err(|error| match error {
                TokenError::Expired => {
                    ApiError::Unauthorized("the access token has expired; refresh it".into())
                }
                TokenError::Invalid => ApiError::Unauthorized("the access token is invalid".into()),
            })?;
        Ok(AuthUser {
            user_id: claims.sub,
            role: claims.role,
            session_id: claims.sid,
        })
    }
}

/// The client's IP address as seen by this server: the peer of the TCP
/// connection. `X-Forwarded-For` and the like are not read: anyone can
/// send them, and a client that could choose its address could choose its
/// throttling budget too. (`None` when the server runs without connection
/// info, as in some tests.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The address to throttle by; all unknown peers share one.
    pub fn address(&self) -> IpAddr {
        self.0.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(address) => address.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip().to_canonical());
        Ok(ClientIp(address))
    }
}

/// The name of the optional header that makes a command safe to retry.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The optional `Idempotency-Key` of a command (plain, or quoted as the
/// IETF draft writes it). A malformed one is a 400 naming the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalIdempotencyKey(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for OptionalIdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(OptionalIdempotencyKey(None));
        };
        let invalid = |problem: String| {
            ApiError::invalid_fields(std::collections::BTreeMap::from([(
                IDEMPOTENCY_KEY_HEADER.to_owned(),
                format!("the {IDEMPOTENCY_KEY_HEADER} header {problem}"),
            )]))
        };
        if values.next().is_some() {
            return Err(invalid("must be sent once".into()));
        }
        let text = value
            .to_str()
            .map_err(|_| invalid("must be visible ASCII characters".into()))?;
        IdempotencyKey::parse(text)
            .map(|key| OptionalIdempotencyKey(Some(key)))
            .map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hyphenated_form_is_a_uuid() {
        let id = "01a2325a-30e3-7184-9d12-077512f14f3c";
        assert_eq!(parse_uuid(id).map(|id| id.to_string()), Some(id.to_owned()));
        assert!(parse_uuid(&id.to_uppercase()).is_some());
        for other in [
            "",
            "01a2325a30e371849d12077512f14f3c",
            "{01a2325a-30e3-7184-9d12-077512f14f3c}",
            "urn:uuid:01a2325a-30e3-7184-9d12-077512f14f3c",
            "01a2325a-30e3-7184-9d12-077512f14f3g",
        ] {
            assert_eq!(parse_uuid(other), None, "{other}");
        }
    }
}
