//! `GET /api/notifications?unread=true`, `PATCH /api/notifications/{id}/read`
//! — the caller's own notifications, newest first — and `GET /api/audit`
//! (PROFESSOR only), both served from their projections.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorResponse;
use super::extract::{ApiPath, ApiQuery, AuthUser, parse_uuid};
use super::openapi::tags;
use super::queries::wait_for_projection;
use super::{ApiError, AppState};
use crate::domain::Role;
use crate::events::EventType;
use crate::log::Topic;
use marauders_projections::{AUDIT, NOTIFICATIONS};

const MAX_PAGE: i64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(mark_read))
        .routes(routes!(audit))
}

// Query values arrive as raw strings and are parsed in the handler, so that
// every bad one is named in one 400; `value_type` tells the document what a
// valid value is.

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct NotificationQuery {
    /// Only unread notifications.
    #[param(value_type = Option<bool>)]
    unread: Option<String>,
    /// An `Event-Offset` of incident-events to wait (up to 2 s) for the
    /// notifications projection to reach before reading.
    #[param(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    min_offset: Option<String>,
}

#[derive(Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NotificationRow {
    id: Uuid,
    /// `comment` (on your incident), `resolved` (your incident, by someone
    /// else) or `critical` (an escalation, for professors).
    kind: String,
    incident_id: Uuid,
    message: String,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NotificationList {
    items: Vec<NotificationRow>,
    unread_count: i64,
}

/// The caller's notifications, newest first (at most 200).
#[utoipa::path(
    get,
    path = "/api/notifications",
    tag = tags::NOTIFICATIONS,
    security(("bearer" = [])),
    params(NotificationQuery),
    responses(
        (status = 200, description = "The caller's notifications and how many are unread", body = NotificationList),
        (status = 400, description = "Invalid query values, each named in `fields`; a `minOffset` the log has not reached", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 503, description = "The projection has not reached `minOffset` within 2 s, or the database is unavailable", body = ErrorResponse),
    ),
)]
async fn list_notifications(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Json<NotificationList>, ApiError> {
    let unread_only = match query.unread.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            let fields = BTreeMap::from([(
                "unread".to_owned(),
                format!("unread must be true or false, got '{other}'"),
            )]);
            return Err(ApiError::invalid_fields(fields));
        }
    };
    wait_for_projection(
        &state,
        NOTIFICATIONS,
        Topic::IncidentEvents,
        query.min_offset.as_deref(),
    )
    .await?;
    let items: Vec<NotificationRow> = sqlx::query_as(
        "SELECT id, kind, incident_id, message, created_at, read_at FROM notifications
          WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL)
          ORDER BY created_at DESC, id DESC LIMIT 200",
    )
    .bind(user.user_id)
    .bind(unread_only)
    .fetch_all(&state.pool)
    .await?;
    let unread_count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL",
    )
    .bind(user.user_id)
    .fetch_one(&state.pool)
    .await?;
    Ok(Json(NotificationList {
        items,
        unread_count,
    }))
}

/// Marks one of the caller's notifications read. Anyone else's gets the
/// same 404 as one that does not exist.
#[utoipa::path(
    patch,
    path = "/api/notifications/{id}/read",
    tag = tags::NOTIFICATIONS,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The notification's id")),
    responses(
        (status = 204, description = "Marked read (or it already was)"),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 404, description = "None of the caller's notifications has this id", body = ErrorResponse),
        (status = 503, description = "The database is unavailable", body = ErrorResponse),
    ),
)]
async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound("notification not found".into());
    let id = parse_uuid(&id).ok_or_else(not_found)?;
    let marked = sqlx::query("UPDATE notifications SET read_at = COALESCE(read_at, now()) WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user.user_id)
        .execute(&state.pool)
        .await?
        .rows_affected();
    if marked == 1 {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    #[param(value_type = Option<Uuid>, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    user_id: Option<String>,
    /// An auth-events event type, e.g. `user.logged_in`.
    #[param(schema_with = auth_event_type_schema)]
    event_type: Option<String>,
    /// Page size (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `nextBeforeOffset` of the previous page.
    #[param(value_type = Option<i64>, minimum = 0)]
    before_offset: Option<String>,
    /// An offset of auth-events to wait (up to 2 s) for the audit
    /// projection to reach before reading.
    #[param(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    min_offset: Option<String>,
}

/// The event types of `auth-events`, from the catalog.
fn auth_event_type_schema() -> utoipa::openapi::Object {
    super::openapi::string_enum_schema(
        EventType::ALL
            .iter()
            .filter(|event_type| event_type.topic() == Topic::AuthEvents)
            .map(|event_type| event_type.as_str()),
    )
}

#[derive(Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditRow {
    /// The event's offset on auth-events.
    #[sqlx(rename = "log_offset")]
    #[schema(minimum = 0)]
    offset: i64,
    event_id: Uuid,
    event_type: String,
    user_id: Option<Uuid>,
    /// The event's `data`.
    #[schema(value_type = Object)]
    data: serde_json::Value,
    occurred_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuditPage {
    items: Vec<AuditRow>,
    /// Pass as `beforeOffset` for older entries; `null` on the last page.
    next_before_offset: Option<i64>,
}

/// The auth-events audit log, newest first (PROFESSOR): filter by `userId`
/// and `eventType`, page with `beforeOffset`.
#[utoipa::path(
    get,
    path = "/api/audit",
    tag = tags::NOTIFICATIONS,
    security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditPage),
        (status = 400, description = "Invalid query values, each named in `fields`; a `minOffset` the log has not reached", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 403, description = "The caller is not a PROFESSOR", body = ErrorResponse),
        (status = 503, description = "The projection has not reached `minOffset` within 2 s, or the database is unavailable", body = ErrorResponse),
    ),
)]
async fn audit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    user.require_role(Role::Professor)?;
    let mut fields = BTreeMap::new();
    let user_id = match query.user_id.as_deref().map(parse_uuid) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            fields.insert("userId".to_owned(), "userId must be a UUID".to_owned());
            None
        }
    };
    if let Some(event_type) = query.event_type.as_deref()
        && (event_type.parse::<EventType>().is_err()
            || event_type
                .parse::<EventType>()
                .is_ok_and(|t| t.topic() != crate::log::Topic::AuthEvents))
    {
        fields.insert(
            "eventType".to_owned(),
            format!("'{event_type}' is not an auth-events event type"),
        );
    }
    let limit = match query.limit.as_deref().map(str::parse::<i64>) {
        None => 50,
        Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
        Some(_) => {
            fields.insert(
                "limit".to_owned(),
                format!("limit must be an integer from 1 to {MAX_PAGE}"),
            );
            0
        }
    };
    let before = match query.before_offset.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(offset)) if offset >= 0 => Some(offset),
        Some(_) => {
            fields.insert(
                "beforeOffset".to_owned(),
                "beforeOffset must be a non-negative integer".to_owned(),
            );
            None
        }
    };
    if !fields.is_empty() {
        return Err(ApiError::invalid_fields(fields));
    }
    wait_for_projection(
        &state,
        AUDIT,
        Topic::AuthEvents,
        query.min_offset.as_deref(),
    )
    .await?;
    let mut items: Vec<AuditRow> = sqlx::query_as(
        "SELECT log_offset, event_id, event_type, user_id, data, occurred_at FROM audit_log
          WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR event_type = $2)
            AND ($3::bigint IS NULL OR log_offset < $3)
          ORDER BY log_offset DESC LIMIT $4",
    )
    .bind(user_id)
    .bind(query.event_type)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_before_offset = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|row| row.offset)
    } else {
        None
    };
    Ok(Json(AuditPage {
        items,
        next_before_offset,
    }))
}
