//! Incident queries, served from the read model (never from the log or the
//! write side): `GET /api/incidents`, `GET /api/incidents/{id}`,
//! `GET /api/incidents/{id}/comments`.
//!
//! Read-your-writes: every query takes `minOffset` (the `Event-Offset` a
//! command returned) and waits — at most two seconds — until the read model
//! has applied that offset; 503 if it has not by then.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use marauders_projections::{READ_MODEL, stored_offset};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, AuthUser};
use super::{ApiError, AppState};
use crate::domain::{IncidentStatus, Location, Severity};
use crate::log::Topic;

const MAX_PAGE: i64 = 100;
const DEFAULT_PAGE: i64 = 20;
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/incidents", get(list_incidents))
        .route("/api/incidents/{id}", get(get_incident))
        .route("/api/incidents/{id}/comments", get(list_comments))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    status: Option<String>,
    severity: Option<String>,
    location: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    min_offset: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsistencyQuery {
    min_offset: Option<String>,
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct IncidentRow {
    id: Uuid,
    title: String,
    description: Option<String>,
    severity: String,
    location: String,
    status: String,
    reported_by: Uuid,
    assigned_to: Option<Uuid>,
    resolved_by: Option<Uuid>,
    resolution: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    version: i64,
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct CommentRow {
    id: Uuid,
    incident_id: Uuid,
    author_id: Uuid,
    body: String,
    created_at: DateTime<Utc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IncidentPage {
    items: Vec<IncidentRow>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    next_cursor: Option<Uuid>,
}

#[derive(Serialize)]
struct CommentList {
    items: Vec<CommentRow>,
}

const INCIDENT_COLUMNS: &str =
    "id, title, description, severity, location, status, reported_by, assigned_to,
    resolved_by, resolution, created_at, updated_at, resolved_at, version";

async fn list_incidents(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<IncidentPage>, ApiError> {
    let mut fields = BTreeMap::new();
    let status = parse_filter::<IncidentStatus>(query.status.as_deref(), "status", &mut fields);
    let severity = parse_filter::<Severity>(query.severity.as_deref(), "severity", &mut fields);
    let location = parse_filter::<Location>(query.location.as_deref(), "location", &mut fields);
    let limit = match query.limit.as_deref().map(str::parse::<i64>) {
        None => DEFAULT_PAGE,
        Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
        Some(_) => {
            fields.insert(
                "limit".into(),
                format!("limit must be an integer from 1 to {MAX_PAGE}"),
            );
            0
        }
    };
    let cursor = match query.cursor.as_deref().map(Uuid::parse_str) {
        None => None,
        Some(Ok(cursor)) => Some(cursor),
        Some(Err(_)) => {
            fields.insert(
                "cursor".into(),
                "cursor must be a nextCursor this API returned".into(),
            );
            None
        }
    };
    let min_offset = parse_min_offset(query.min_offset.as_deref(), &mut fields);
    if !fields.is_empty() {
        return Err(ApiError::invalid_fields(fields));
    }
    wait_for_offset(&state, READ_MODEL, Topic::IncidentEvents, min_offset).await?;
    let sql = format!(
        "SELECT {INCIDENT_COLUMNS} FROM read_incidents
          WHERE NOT deleted
            AND ($1::text IS NULL OR status = $1)
            AND ($2::text IS NULL OR severity = $2)
            AND ($3::text IS NULL OR location = $3)
            AND ($4::uuid IS NULL OR id < $4)
          ORDER BY id DESC LIMIT $5"
    );
    let mut items: Vec<IncidentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(status.map(|s| s.as_str()))
        .bind(severity.map(|s| s.as_str()))
        .bind(location.map(|l| l.as_str()))
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|item| item.id)
    } else {
        None
    };
    Ok(Json(IncidentPage { items, next_cursor }))
}

async fn get_incident(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ConsistencyQuery>,
) -> Result<Json<IncidentRow>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("incident not found".into()))?;
    wait_for_projection(
        &state,
        READ_MODEL,
        Topic::IncidentEvents,
        query.min_offset.as_deref(),
    )
    .await?;
    let sql =
        format!("SELECT {INCIDENT_COLUMNS} FROM read_incidents WHERE id = $1 AND NOT deleted");
    let incident: Option<IncidentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    incident
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("incident not found".into()))
}

async fn list_comments(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ConsistencyQuery>,
) -> Result<Json<CommentList>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("incident not found".into()))?;
    wait_for_projection(
        &state,
        READ_MODEL,
        Topic::IncidentEvents,
        query.min_offset.as_deref(),
    )
    .await?;
    let visible: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM read_incidents WHERE id = $1 AND NOT deleted)",
    )
    .bind(id)
    .fetch_one(&state.pool)
    .await?;
    if !visible {
        return Err(ApiError::NotFound("incident not found".into()));
    }
    let items: Vec<CommentRow> = sqlx::query_as(
        "SELECT id, incident_id, author_id, body, created_at FROM read_comments
          WHERE incident_id = $1 ORDER BY log_offset",
    )
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(CommentList { items }))
}

fn parse_filter<T: std::str::FromStr<Err = crate::domain::UnknownValue>>(
    raw: Option<&str>,
    field: &str,
    fields: &mut BTreeMap<String, String>,
) -> Option<T> {
    match raw?.parse::<T>() {
        Ok(value) => Some(value),
        Err(error) => {
            fields.insert(field.to_owned(), error.to_string());
            None
        }
    }
}

fn parse_min_offset(raw: Option<&str>, fields: &mut BTreeMap<String, String>) -> Option<u64> {
    match raw?.parse::<u64>() {
        Ok(offset) if offset <= i64::MAX as u64 => Some(offset),
        _ => {
            fields.insert(
                "minOffset".into(),
                "minOffset must be a non-negative integer (an Event-Offset)".into(),
            );
            None
        }
    }
}

/// Parses a raw `minOffset` and waits for `projector` to pass it: what every
/// query does before it reads.
pub async fn wait_for_projection(
    state: &AppState,
    projector: &str,
    topic: Topic,
    raw: Option<&str>,
) -> Result<(), ApiError> {
    let mut fields = BTreeMap::new();
    let min_offset = parse_min_offset(raw, &mut fields);
    if !fields.is_empty() {
        return Err(ApiError::invalid_fields(fields));
    }
    wait_for_offset(state, projector, topic, min_offset).await
}

/// Waits until `projector` has applied `min_offset` (its stored offset is
/// past it), checking every 10 ms for at most two seconds.
async fn wait_for_offset(
    state: &AppState,
    projector: &str,
    topic: Topic,
    min_offset: Option<u64>,
) -> Result<(), ApiError> {
    let Some(min_offset) = min_offset else {
        return Ok(());
    };
    let deadline = Instant::now() + READ_YOUR_WRITES_WAIT;
    loop {
        if stored_offset(&state.pool, projector, topic).await? > min_offset {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ApiError::Unavailable(format!(
                "{projector} has not reached offset {min_offset} of {topic} within {READ_YOUR_WRITES_WAIT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
