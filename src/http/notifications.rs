//! `GET /api/notifications?unread=true`, `PATCH /api/notifications/{id}/read`
//! — the caller's own notifications, newest first — and `GET /api/audit`
//! (PROFESSOR only), both served from their projections.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::queries::wait_for_projection;
use super::{ApiError, AppState};
use crate::domain::Role;
use crate::events::EventType;
use crate::log::Topic;
use marauders_projections::{AUDIT, NOTIFICATIONS};

const MAX_PAGE: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/notifications", get(list_notifications))
        .route("/api/notifications/{id}/read", patch(mark_read))
        .route("/api/audit", get(audit))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationQuery {
    unread: Option<String>,
    /// An `Event-Offset` of `incident-events` to wait for.
    min_offset: Option<String>,
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct NotificationRow {
    id: Uuid,
    kind: String,
    incident_id: Uuid,
    message: String,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NotificationList {
    items: Vec<NotificationRow>,
    unread_count: i64,
}

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

/// Only the owner may mark a notification; anyone else gets the same 404
/// as for a notification that does not exist.
async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound("notification not found".into());
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditQuery {
    user_id: Option<String>,
    event_type: Option<String>,
    limit: Option<String>,
    before_offset: Option<String>,
    /// An offset of `auth-events` to wait for.
    min_offset: Option<String>,
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct AuditRow {
    #[sqlx(rename = "log_offset")]
    offset: i64,
    event_id: Uuid,
    event_type: String,
    user_id: Option<Uuid>,
    data: serde_json::Value,
    occurred_at: DateTime<Utc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditPage {
    items: Vec<AuditRow>,
    /// Pass as `beforeOffset` for older entries; `null` on the last page.
    next_before_offset: Option<i64>,
}

/// Newest first; filter by `userId` and `eventType`; page with `beforeOffset`.
async fn audit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    user.require_role(Role::Professor)?;
    let mut fields = BTreeMap::new();
    let user_id = match query.user_id.as_deref().map(Uuid::parse_str) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
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
