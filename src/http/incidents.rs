//! Incident commands over REST: `POST /api/incidents`, `PUT
//! /api/incidents/{id}`, `PATCH …/resolve`, `PATCH …/severity`, `DELETE
//! /api/incidents/{id}`, `POST …/comments`.
//!
//! Each answers once the log has acknowledged its event, with the resulting
//! state and the event's offset in the `Event-Offset` header (so a client can
//! later read its own writes). None waits for a projector.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ErrorCode, ErrorResponse};
use super::extract::{ApiJson, ApiPath, AuthUser, OptionalIdempotencyKey, parse_uuid};
use super::openapi::tags;
use super::{ApiError, AppState};
use crate::commands::{AcceptedCommand, CommandError, CommandOutcome, CommandRequest};
use crate::domain::{IncidentStatus, Location, Severity};
use crate::events::EventPayload;
use crate::idempotency::{derived_comment_id, derived_incident_id};
use crate::incident::{
    Actor, CommentBody, Description, Incident, IncidentChanges, IncidentCommand, IncidentTitle,
    Rejection, Resolution, Rule,
};

/// The response header carrying the offset of the command's event.
pub const EVENT_OFFSET_HEADER: &str = "Event-Offset";

/// One `routes!` per path: it registers every listed handler on every
/// listed path.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(report))
        .routes(routes!(update, delete))
        .routes(routes!(resolve))
        .routes(routes!(change_severity))
        .routes(routes!(add_comment))
}

/// An incident as the write side has it after the command.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct IncidentView {
    id: Uuid,
    title: String,
    description: Option<String>,
    severity: Severity,
    location: Location,
    status: IncidentStatus,
    reported_by: Uuid,
    assigned_to: Option<Uuid>,
    resolved_by: Option<Uuid>,
    resolution: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    /// How many events the incident has had, this one included.
    #[schema(minimum = 1)]
    version: u64,
}

impl From<Incident> for IncidentView {
    fn from(incident: Incident) -> Self {
        IncidentView {
            id: incident.id,
            title: incident.title,
            description: incident.description,
            severity: incident.severity,
            location: incident.location,
            status: incident.status,
            reported_by: incident.reported_by,
            assigned_to: incident.assigned_to,
            resolved_by: incident.resolved_by,
            resolution: incident.resolution,
            created_at: incident.created_at,
            updated_at: incident.updated_at,
            resolved_at: incident.resolved_at,
            version: incident.version,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CommentView {
    id: Uuid,
    incident_id: Uuid,
    author_id: Uuid,
    body: String,
    created_at: DateTime<Utc>,
}

// Request fields arrive as raw strings and are parsed in the handler, so
// that every bad field is named in one 400; `value_type` tells the document
// what a valid value is. The `pattern`s restate the text rules of
// `marauders_core::incident` (something besides spaces; no control
// characters but tab and newline), so that clients and the API fuzzer know
// them; tests/api/openapi.rs checks they agree with the parsers.

#[derive(Deserialize, ToSchema)]
struct ReportRequest {
    /// Trimmed; no control characters.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u0008\u000B-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    title: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 5000, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Severity, required = true)]
    severity: Option<String>,
    #[serde(default)]
    #[schema(value_type = Location, required = true)]
    location: Option<String>,
}

/// Send at least one field; only the ones that change anything reach the
/// event.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UpdateRequest {
    /// Absent: unchanged. (Not nullable: a title cannot be removed.)
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u0008\u000B-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    title: Option<Option<String>>,
    /// Absent: unchanged; `null` or `""`: cleared.
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Option<String>, max_length = 5000, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Location)]
    location: Option<Option<String>>,
    /// `OPEN` or `INVESTIGATING`; an incident is resolved with
    /// `PATCH …/resolve`.
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(schema_with = updatable_status_schema)]
    status: Option<Option<String>>,
    /// Absent: unchanged; `null`: unassign.
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Option<Uuid>, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    assigned_to: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema)]
struct ResolveRequest {
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 2000, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u0008\u000B-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    resolution: Option<String>,
}

#[derive(Deserialize, ToSchema)]
struct SeverityRequest {
    #[serde(default)]
    #[schema(value_type = Severity, required = true)]
    severity: Option<String>,
}

#[derive(Deserialize, ToSchema)]
struct CommentRequest {
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1, max_length = 2000, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u0008\u000B-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$")]
    body: Option<String>,
}

/// The optional `Idempotency-Key` request header of every command.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // only describes the header; `OptionalIdempotencyKey` reads it
struct IdempotencyKeyParam {
    /// Makes the command safe to retry: the same user, key and request get
    /// the first outcome again (same status, body and `Event-Offset`),
    /// never a second effect, on any instance and after any restart; the
    /// same key with a different request gets 422. 1–255 visible ASCII
    /// characters, plain or as a quoted string (`"…"`, the IETF
    /// idempotency-key draft's form). Remembered for 24 hours or the newest
    /// 50,000 keyed commands, whichever is shorter. A rejected command, or
    /// one that changed nothing, is not remembered: its retry is decided
    /// again.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 257,
        pattern = r#"^(?:[!#-~][!-~]{0,254}|"(?:[!#-\[\]-~]|\\["\\]){1,255}")$"#
    )]
    idempotency_key: Option<String>,
}

/// Collects one message per invalid field, then fails with all of them.
#[derive(Default)]
struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        parsed
            .map_err(|message| self.0.insert(field.to_owned(), message))
            .ok()
    }

    fn required<T>(
        &mut self,
        field: &str,
        raw: Option<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match raw {
            Some(raw) => self.check(field, parse(&raw)),
            None => self.check(field, Err(format!("{field} is required"))),
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_fields(self.0))
        }
    }
}

fn parse_enum<T: FromStr<Err = crate::domain::UnknownValue>>(raw: &str) -> Result<T, String> {
    raw.parse::<T>().map_err(|error| error.to_string())
}

/// Path ids that are not UUIDs name no incident: 404, like an unknown one.
fn incident_id(raw: &str) -> Result<Uuid, ApiError> {
    parse_uuid(raw).ok_or_else(|| ApiError::NotFound("incident not found".into()))
}

fn actor(user: AuthUser) -> Actor {
    Actor {
        user_id: user.user_id,
        role: user.role,
    }
}

/// Reports an incident; the reporter is the caller.
#[utoipa::path(
    post,
    path = "/api/incidents",
    tag = tags::COMMANDS,
    security(("bearer" = [])),
    params(IdempotencyKeyParam),
    request_body = ReportRequest,
    responses(
        (status = 201, description = "Reported", body = IncidentView, headers(("Event-Offset" = u64, description = "Offset of the event on incident-events (a query's `minOffset`); absent when nothing changed"))),
        (status = 400, description = "Invalid fields, each named in `fields`, or malformed JSON", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 409, description = "A request with this Idempotency-Key is still being processed (`idempotency_key_in_flight`), or an incident with the id this key derives already exists", body = ErrorResponse),
        (status = 413, description = "The body is over 64 KiB", body = ErrorResponse),
        (status = 415, description = "The body is not JSON", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was already used for a different request (`idempotency_key_reused`)", body = ErrorResponse),
        (status = 503, description = "The log is unavailable (`unavailable`: nothing took effect), or it did not confirm the command in time (`outcome_unknown`: retrying with the same Idempotency-Key is safe)", body = ErrorResponse, headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
)]
async fn report(
    State(state): State<AppState>,
    user: AuthUser,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiJson(request): ApiJson<ReportRequest>,
) -> Result<Response, ApiError> {
    let mut errors = FieldErrors::default();
    let title = errors.required("title", request.title, IncidentTitle::parse);
    let description = errors.check(
        "description",
        Description::parse(request.description.as_deref().unwrap_or("")),
    );
    let severity = errors.required("severity", request.severity, parse_enum::<Severity>);
    let location = errors.required("location", request.location, parse_enum::<Location>);
    errors.finish()?;
    let (Some(title), Some(description), Some(severity), Some(location)) =
        (title, description, severity, location)
    else {
        unreachable!("finish() returned Ok, so every field parsed");
    };
    let id = key
        .as_ref()
        .map_or_else(Uuid::now_v7, |key| derived_incident_id(user.user_id, key));
    let command = IncidentCommand::Report {
        id,
        title,
        description,
        severity,
        location,
    };
    let outcome = execute(&state, id, command, user, key).await?;
    Ok(incident_response(StatusCode::CREATED, outcome))
}

/// Changes an incident's fields (reporter, or PREFECT and above).
#[utoipa::path(
    put,
    path = "/api/incidents/{id}",
    tag = tags::COMMANDS,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The incident's id"), IdempotencyKeyParam),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "The incident after the update", body = IncidentView, headers(("Event-Offset" = u64, description = "Offset of the event on incident-events (a query's `minOffset`); absent when nothing changed"))),
        (status = 400, description = "Invalid fields, nothing to update, status RESOLVED, or malformed JSON", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 403, description = "The caller's role or relation to the incident does not allow this", body = ErrorResponse),
        (status = 404, description = "No such incident (unknown, deleted or not a UUID)", body = ErrorResponse),
        (status = 409, description = "The incident is resolved, or another command on this incident won a race; retry (or a request with this Idempotency-Key is still being processed)", body = ErrorResponse),
        (status = 413, description = "The body is over 64 KiB", body = ErrorResponse),
        (status = 415, description = "The body is not JSON", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was already used for a different request (`idempotency_key_reused`)", body = ErrorResponse),
        (status = 503, description = "The log is unavailable (`unavailable`: nothing took effect), or it did not confirm the command in time (`outcome_unknown`: retrying with the same Idempotency-Key is safe)", body = ErrorResponse, headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
)]
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<UpdateRequest>,
) -> Result<Response, ApiError> {
    let id = incident_id(&id)?;
    let mut errors = FieldErrors::default();
    let mut changes = IncidentChanges::default();
    if let Some(raw) = request.title {
        changes.title = errors.check(
            "title",
            not_null("title", raw).and_then(|raw| IncidentTitle::parse(&raw)),
        );
    }
    if let Some(raw) = request.description {
        changes.description = match raw {
            None => Some(Description::none()),
            Some(raw) => errors.check("description", Description::parse(&raw)),
        };
    }
    if let Some(raw) = request.location {
        changes.location = errors.check(
            "location",
            not_null("location", raw).and_then(|raw| parse_enum::<Location>(&raw)),
        );
    }
    if let Some(raw) = request.status {
        let status = errors.check(
            "status",
            not_null("status", raw).and_then(|raw| parse_enum::<IncidentStatus>(&raw)),
        );
        if status == Some(IncidentStatus::Resolved) {
            errors.check::<()>(
                "status",
                Err("use PATCH /api/incidents/{id}/resolve to resolve".into()),
            );
        }
        changes.status = status;
    }
    if let Some(raw) = request.assigned_to {
        changes.assigned_to = match raw {
            None => Some(None),
            Some(raw) => errors
                .check(
                    "assignedTo",
                    parse_uuid(&raw)
                        .ok_or_else(|| "assignedTo must be a user id (UUID) or null".to_owned()),
                )
                .map(Some),
        };
    }
    errors.finish()?;
    if changes == IncidentChanges::default() {
        return Err(ApiError::bad_request(
            "nothing to update: send at least one of title, description, location, status, assignedTo",
        ));
    }
    let outcome = execute(&state, id, IncidentCommand::Update(changes), user, key).await?;
    Ok(incident_response(StatusCode::OK, outcome))
}

/// Resolves an incident (reporter, or PREFECT and above).
#[utoipa::path(
    patch,
    path = "/api/incidents/{id}/resolve",
    tag = tags::COMMANDS,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The incident's id"), IdempotencyKeyParam),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "The resolved incident", body = IncidentView, headers(("Event-Offset" = u64, description = "Offset of the event on incident-events (a query's `minOffset`); absent when nothing changed"))),
        (status = 400, description = "Invalid fields, each named in `fields`, or malformed JSON", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 403, description = "The caller's role or relation to the incident does not allow this", body = ErrorResponse),
        (status = 404, description = "No such incident (unknown, deleted or not a UUID)", body = ErrorResponse),
        (status = 409, description = "Already resolved, or another command on this incident won a race; retry (or a request with this Idempotency-Key is still being processed)", body = ErrorResponse),
        (status = 413, description = "The body is over 64 KiB", body = ErrorResponse),
        (status = 415, description = "The body is not JSON", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was already used for a different request (`idempotency_key_reused`)", body = ErrorResponse),
        (status = 503, description = "The log is unavailable (`unavailable`: nothing took effect), or it did not confirm the command in time (`outcome_unknown`: retrying with the same Idempotency-Key is safe)", body = ErrorResponse, headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
)]
async fn resolve(
    State(state): State<AppState>,
    user: AuthUser,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<ResolveRequest>,
) -> Result<Response, ApiError> {
    let id = incident_id(&id)?;
    let mut errors = FieldErrors::default();
    let resolution = errors.required("resolution", request.resolution, Resolution::parse);
    errors.finish()?;
    let command = IncidentCommand::Resolve {
        resolution: resolution.expect("checked by finish"),
    };
    let outcome = execute(&state, id, command, user, key).await?;
    Ok(incident_response(StatusCode::OK, outcome))
}

/// Changes an incident's severity: anyone may raise it, only PREFECT and
/// above may lower it.
#[utoipa::path(
    patch,
    path = "/api/incidents/{id}/severity",
    tag = tags::COMMANDS,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The incident's id"), IdempotencyKeyParam),
    request_body = SeverityRequest,
    responses(
        (status = 200, description = "The incident with its new severity", body = IncidentView, headers(("Event-Offset" = u64, description = "Offset of the event on incident-events (a query's `minOffset`); absent when nothing changed"))),
        (status = 400, description = "Invalid fields, each named in `fields`, or malformed JSON", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 403, description = "The caller's role or relation to the incident does not allow this", body = ErrorResponse),
        (status = 404, description = "No such incident (unknown, deleted or not a UUID)", body = ErrorResponse),
        (status = 409, description = "The incident is resolved, or another command on this incident won a race; retry (or a request with this Idempotency-Key is still being processed)", body = ErrorResponse),
        (status = 413, description = "The body is over 64 KiB", body = ErrorResponse),
        (status = 415, description = "The body is not JSON", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was already used for a different request (`idempotency_key_reused`)", body = ErrorResponse),
        (status = 503, description = "The log is unavailable (`unavailable`: nothing took effect), or it did not confirm the command in time (`outcome_unknown`: retrying with the same Idempotency-Key is safe)", body = ErrorResponse, headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
)]
async fn change_severity(
    State(state): State<AppState>,
    user: AuthUser,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<SeverityRequest>,
) -> Result<Response, ApiError> {
    let id = incident_id(&id)?;
    let mut errors = FieldErrors::default();
    let severity = errors.required("severity", request.severity, parse_enum::<Severity>);
    errors.finish()?;
    let command = IncidentCommand::ChangeSeverity {
        severity: severity.expect("checked by finish"),
    };
    let outcome = execute(&state, id, command, user, key).await?;
    Ok(incident_response(StatusCode::OK, outcome))
}

/// Deletes an incident (reporter, or PROFESSOR).
#[utoipa::path(
    delete,
    path = "/api/incidents/{id}",
    tag = tags::COMMANDS,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The incident's id"), IdempotencyKeyParam),
    responses(
        (status = 204, description = "Deleted", headers(("Event-Offset" = u64, description = "Offset of the event on incident-events (a query's `minOffset`); absent when nothing changed"))),
        (status = 400, description = "A malformed Idempotency-Key header (empty, longer than 255 characters, or not visible ASCII)", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 403, description = "The caller's role or relation to the incident does not allow this", body = ErrorResponse),
        (status = 404, description = "No such incident (unknown, deleted or not a UUID)", body = ErrorResponse),
        (status = 409, description = "Another command on this incident won a race, or a request with this Idempotency-Key is still being processed; retry", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was already used for a different request (`idempotency_key_reused`)", body = ErrorResponse),
        (status = 503, description = "The log is unavailable (`unavailable`: nothing took effect), or it did not confirm the command in time (`outcome_unknown`: retrying with the same Idempotency-Key is safe)", body = ErrorResponse, headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
)]
async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = incident_id(&id)?;
    let outcome = execute(&state, id, IncidentCommand::Delete, user, key).await?;
    let offset = match outcome {
        CommandOutcome::Applied(accepted) => Some(accepted.offset),
        CommandOutcome::Unchanged { offset, .. } => offset,
    };
    Ok((StatusCode::NO_CONTENT, offset_header(offset)).into_response())
}

/// Comments on an incident.
#[utoipa::path(
    post,
    path = "/api/incidents/{id}/comments",
    tag = tags::COMMANDS,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The incident's id"), IdempotencyKeyParam),
    request_body = CommentRequest,
    responses(
        (status = 201, description = "The comment", body = CommentView, headers(("Event-Offset" = u64, description = "Offset of the event on incident-events (a query's `minOffset`); absent when nothing changed"))),
        (status = 400, description = "Invalid fields, each named in `fields`, or malformed JSON", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 404, description = "No such incident (unknown, deleted or not a UUID)", body = ErrorResponse),
        (status = 409, description = "Another command on this incident won a race, or a request with this Idempotency-Key is still being processed; retry", body = ErrorResponse),
        (status = 413, description = "The body is over 64 KiB", body = ErrorResponse),
        (status = 415, description = "The body is not JSON", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was already used for a different request (`idempotency_key_reused`)", body = ErrorResponse),
        (status = 503, description = "The log is unavailable (`unavailable`: nothing took effect), or it did not confirm the command in time (`outcome_unknown`: retrying with the same Idempotency-Key is safe)", body = ErrorResponse, headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
)]
async fn add_comment(
    State(state): State<AppState>,
    user: AuthUser,
    OptionalIdempotencyKey(key): OptionalIdempotencyKey,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<CommentRequest>,
) -> Result<Response, ApiError> {
    let id = incident_id(&id)?;
    let mut errors = FieldErrors::default();
    let body = errors.required("body", request.body, CommentBody::parse);
    errors.finish()?;
    let comment_id = key
        .as_ref()
        .map_or_else(Uuid::now_v7, |key| derived_comment_id(user.user_id, key));
    let command = IncidentCommand::AddComment {
        comment_id,
        body: body.expect("checked by finish"),
    };
    let outcome = execute(&state, id, command, user, key).await?;
    let CommandOutcome::Applied(accepted) = outcome else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "a comment always appends an event"
        )));
    };
    let AcceptedCommand { event, offset, .. } = *accepted;
    let EventPayload::CommentAdded(comment) = event.payload else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "a comment command produced another event"
        )));
    };
    let view = CommentView {
        id: comment.id,
        incident_id: comment.incident_id,
        author_id: comment.author_id,
        body: comment.body,
        created_at: comment.created_at,
    };
    Ok((StatusCode::CREATED, offset_header(Some(offset)), Json(view)).into_response())
}

/// Runs a parsed command as `user`, mapping rejections to the error
/// contract.
async fn execute(
    state: &AppState,
    incident_id: Uuid,
    command: IncidentCommand,
    user: AuthUser,
    key: Option<crate::idempotency::IdempotencyKey>,
) -> Result<CommandOutcome, ApiError> {
    let request = CommandRequest {
        incident_id,
        command,
        actor: actor(user),
        key,
    };
    // A task of its own: a client that hangs up must not cancel a command
    // between its append and its confirmation (the retry would still be
    // safe, but the command would then be left unconfirmed for nothing).
    let commands = state.commands.clone();
    tokio::spawn(async move { commands.execute(request).await })
        .await
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("a command task failed: {error}")))?
        .map_err(command_error)
}

fn incident_response(status: StatusCode, outcome: CommandOutcome) -> Response {
    let (incident, offset) = match outcome {
        CommandOutcome::Applied(accepted) => (accepted.incident, Some(accepted.offset)),
        CommandOutcome::Unchanged { incident, offset } => (incident, offset),
    };
    (
        status,
        offset_header(offset),
        Json(IncidentView::from(incident)),
    )
        .into_response()
}

fn offset_header(offset: Option<u64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(offset) = offset {
        headers.insert(EVENT_OFFSET_HEADER, HeaderValue::from(offset));
    }
    headers
}

/// A refused command as an HTTP answer: its rule's code (and so status),
/// its rule's message, and the rule's name in `rule`.
fn command_error(error: CommandError) -> ApiError {
    let message = error.to_string();
    let (code, rule) = match error {
        CommandError::Log(error) => return ApiError::from(error),
        CommandError::KeyReused => return ApiError::KeyReused(message),
        CommandError::KeyInFlight => return ApiError::KeyInFlight(message),
        CommandError::Unconfirmed { .. } => return ApiError::OutcomeUnknown(message),
        // The version rule voided our event: the client reloads and retries.
        CommandError::LostRace => (ErrorCode::Conflict, Rule::LostRace),
        CommandError::Rejected(rejection) => (public_code(&rejection), rejection.rule()),
    };
    ApiError::Rejected {
        code,
        rule,
        message,
    }
}

/// The one place each rule of the aggregate gets its public code; several
/// rules share one.
fn public_code(rejection: &Rejection) -> ErrorCode {
    match rejection {
        Rejection::NotFound => ErrorCode::NotFound,
        Rejection::UpdateNeedsReporterOrStaff
        | Rejection::ResolveNeedsReporterOrStaff
        | Rejection::LoweringSeverityNeedsStaff
        | Rejection::DeleteNeedsReporterOrProfessor => ErrorCode::Forbidden,
        Rejection::AlreadyExists { .. }
        | Rejection::ResolvedCannotBeUpdated
        | Rejection::AlreadyResolved
        | Rejection::ResolvedSeverityIsFinal => ErrorCode::Conflict,
        Rejection::ResolvedOnlyByResolving => ErrorCode::BadRequest,
    }
}

/// A field of an update that may be left out but not set to `null`.
fn not_null(field: &str, raw: Option<String>) -> Result<String, String> {
    raw.ok_or_else(|| format!("{field} cannot be null; leave it out to keep it"))
}

/// The statuses an update may set: every status but `RESOLVED`.
fn updatable_status_schema() -> utoipa::openapi::Object {
    super::openapi::string_enum_schema(
        IncidentStatus::ALL
            .iter()
            .copied()
            .filter(|status| *status != IncidentStatus::Resolved)
            .map(IncidentStatus::as_str),
    )
}

fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}
