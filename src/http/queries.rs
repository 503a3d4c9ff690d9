//! Incident queries, served from the read model (never from the log or the
//! write side): `GET /api/incidents`, `GET /api/incidents/{id}`,
//! `GET /api/incidents/{id}/comments`.
//!
//! Read-your-writes: every query takes `minOffset` (the `Event-Offset` a
//! command returned) and waits — at most two seconds — until the read model
//! has applied that offset; 503 if it has not by then. An offset the log has
//! not reached yet is a 400 at once: no command can have returned it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use marauders_projections::{READ_MODEL, projection_position};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorResponse;
use super::extract::{ApiPath, ApiQuery, AuthUser, parse_uuid};
use super::openapi::tags;
use super::{ApiError, AppState};
use crate::domain::{IncidentStatus, Location, Severity};
use crate::log::Topic;

const MAX_PAGE: i64 = 100;
const DEFAULT_PAGE: i64 = 20;
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_incidents))
        .routes(routes!(get_incident))
        .routes(routes!(list_comments))
}

// Query values arrive as raw strings and are parsed in the handler, so that
// every bad one is named in one 400; `value_type` tells the document what a
// valid value is.

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[param(value_type = Option<IncidentStatus>)]
    status: Option<String>,
    #[param(value_type = Option<Severity>)]
    severity: Option<String>,
    #[param(value_type = Option<Location>)]
    location: Option<String>,
    /// Page size (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `nextCursor` of the previous page (opaque).
    #[param(value_type = Option<String>)]
    cursor: Option<String>,
    /// An `Event-Offset` of incident-events to wait (up to 2 s) for the read
    /// model to reach before reading; 400 if the log has not reached it.
    #[param(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    min_offset: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ConsistencyQuery {
    /// An `Event-Offset` of incident-events to wait (up to 2 s) for the read
    /// model to reach before reading; 400 if the log has not reached it.
    #[param(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    min_offset: Option<String>,
}

/// An incident as the read model has it.
#[derive(Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
struct IncidentRow {
    id: Uuid,
    title: String,
    description: Option<String>,
    #[schema(value_type = Severity)]
    severity: String,
    #[schema(value_type = Location)]
    location: String,
    #[schema(value_type = IncidentStatus)]
    status: String,
    reported_by: Uuid,
    assigned_to: Option<Uuid>,
    resolved_by: Option<Uuid>,
    resolution: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    #[schema(minimum = 1)]
    version: i64,
    /// Where its `incident.created` is on the log: the order of the list.
    #[serde(skip)]
    created_offset: i64,
}

#[derive(Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CommentRow {
    id: Uuid,
    incident_id: Uuid,
    author_id: Uuid,
    body: String,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct IncidentPage {
    items: Vec<IncidentRow>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    /// Opaque: its form may change.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct CommentList {
    items: Vec<CommentRow>,
}

const INCIDENT_COLUMNS: &str =
    "id, title, description, severity, location, status, reported_by, assigned_to,
    resolved_by, resolution, created_at, updated_at, resolved_at, version, created_offset";

/// A page cursor: the creation offset of the last incident of the page
/// before. Ids cannot serve — those derived from idempotency keys carry no
/// time — so incidents are ordered by where they were created on the log.
fn encode_cursor(created_offset: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("created<{created_offset}"))
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("created<")?
        .parse::<i64>()
        .ok()
        .filter(|offset| *offset >= 0)
}

/// Incidents, newest first, filtered and paged by keyset.
#[utoipa::path(
    get,
    path = "/api/incidents",
    tag = tags::QUERIES,
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of incidents", body = IncidentPage),
        (status = 400, description = "Invalid query values, each named in `fields`; a `minOffset` the log has not reached", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 503, description = "The read model has not reached `minOffset` within 2 s, or the database is unavailable", body = ErrorResponse),
    ),
)]
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
    let cursor = match query.cursor.as_deref().map(decode_cursor) {
        None => None,
        Some(Some(cursor)) => Some(cursor),
        Some(None) => {
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
            AND ($4::bigint IS NULL OR created_offset < $4)
          ORDER BY created_offset DESC LIMIT $5"
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
        items.last().map(|item| encode_cursor(item.created_offset))
    } else {
        None
    };
    Ok(Json(IncidentPage { items, next_cursor }))
}

/// One incident.
#[utoipa::path(
    get,
    path = "/api/incidents/{id}",
    tag = tags::QUERIES,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The incident's id"), ConsistencyQuery),
    responses(
        (status = 200, description = "The incident", body = IncidentRow),
        (status = 400, description = "Invalid `minOffset`, or one the log has not reached", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 404, description = "No such incident (unknown, deleted or not a UUID)", body = ErrorResponse),
        (status = 503, description = "The read model has not reached `minOffset` within 2 s, or the database is unavailable", body = ErrorResponse),
    ),
)]
async fn get_incident(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ConsistencyQuery>,
) -> Result<Json<IncidentRow>, ApiError> {
    let id = parse_uuid(&id).ok_or_else(|| ApiError::NotFound("incident not found".into()))?;
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

/// An incident's comments, oldest first.
#[utoipa::path(
    get,
    path = "/api/incidents/{id}/comments",
    tag = tags::QUERIES,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The incident's id"), ConsistencyQuery),
    responses(
        (status = 200, description = "The comments", body = CommentList),
        (status = 400, description = "Invalid `minOffset`, or one the log has not reached", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 404, description = "No such incident (unknown, deleted or not a UUID)", body = ErrorResponse),
        (status = 503, description = "The read model has not reached `minOffset` within 2 s, or the database is unavailable", body = ErrorResponse),
    ),
)]
async fn list_comments(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ConsistencyQuery>,
) -> Result<Json<CommentList>, ApiError> {
    let id = parse_uuid(&id).ok_or_else(|| ApiError::NotFound("incident not found".into()))?;
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

/// Checks that `projector`'s tables belong to this log, then waits until it
/// has applied `min_offset` (its stored offset is past it), for at most two
/// seconds.
///
/// # Errors
///
/// 503 when the projection was built from another log (a database moved to
/// another log): its rows would answer with another log's state, e.g. a 404
/// for an incident this log has. 400 when `min_offset` is at or past the
/// log's end: a command returns an offset only once the log has it, so such
/// a value was never returned, and waiting for it would only hold the
/// request for two seconds. 503 when the projector does not get there in
/// time.
async fn wait_for_offset(
    state: &AppState,
    projector: &str,
    topic: Topic,
    min_offset: Option<u64>,
) -> Result<(), ApiError> {
    let position = projection_position(&state.pool, projector, topic).await?;
    if let Some(log_id) = state.log.known_log_id()
        && !position.belongs_to(log_id)
    {
        return Err(ApiError::Unavailable(format!(
            "{projector} was built from log {}, not from this log ({log_id}); it must be rebuilt",
            position
                .log_id
                .map_or_else(String::new, |id| id.to_string())
        )));
    }
    let Some(min_offset) = min_offset else {
        return Ok(());
    };
    let deadline = Instant::now() + READ_YOUR_WRITES_WAIT;
    if position.next_offset > min_offset {
        return Ok(());
    }
    // Only when not already there: the common case costs nothing.
    let log_end = state.log.log_end(topic).await?;
    if min_offset >= log_end {
        let fields = BTreeMap::from([(
            "minOffset".to_owned(),
            format!(
                "{topic} ends at offset {log_end}: minOffset must be an offset it has (an Event-Offset)"
            ),
        )]);
        return Err(ApiError::invalid_fields(fields));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if state
        .applied
        .wait_until_applied(projector, topic, min_offset, left)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::Unavailable(format!(
            "{projector} has not reached offset {min_offset} of {topic} within {READ_YOUR_WRITES_WAIT:?}"
        )))
    }
}
