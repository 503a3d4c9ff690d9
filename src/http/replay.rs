//! `GET /api/events/replay?topic=&fromOffset=&limit=`: read the log from an
//! offset — how a client that was away catches up (the seed's
//! US-STREAM-003). Served straight from the log, not from a projection.
//!
//! Who may replay which topic is decided here and nowhere else:
//! [`role_needed_to_replay`].

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorResponse;
use super::extract::{ApiQuery, AuthUser};
use super::openapi::{event_envelope_ref, tags};
use super::{ApiError, AppState};
use crate::domain::Role;
use crate::events::Event;
use crate::log::Topic;

/// Events per page unless `limit` says otherwise.
pub const DEFAULT_REPLAY_LIMIT: u32 = 100;
/// The most events one page returns; larger limits are capped to it.
pub const MAX_REPLAY_LIMIT: u32 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(replay))
}

/// The least role that may replay `topic`:
///
/// - `incident-events`: everyone (STUDENT). It is what the board shows.
/// - `presence-events`: PREFECT and PROFESSOR. It is every user's
///   connection history — when each was online, which incidents each had
///   open. Students see who is online *now* through `presence:online`.
/// - `auth-events`: PROFESSOR. The audit log: emails, client addresses,
///   logins and role changes.
///
/// A role below it gets 403. docs/realtime.md, the README and the OpenAPI
/// document say the same.
pub fn role_needed_to_replay(topic: Topic) -> Role {
    match topic {
        Topic::IncidentEvents => Role::Student,
        Topic::PresenceEvents => Role::Prefect,
        Topic::AuthEvents => Role::Professor,
    }
}

/// Raw strings, parsed below so each bad value gets its own message;
/// `value_type` tells the document what a valid value is.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ReplayQuery {
    /// Default `incident-events` (anyone); `presence-events` needs PREFECT
    /// or PROFESSOR, `auth-events` PROFESSOR.
    #[param(value_type = Option<Topic>)]
    topic: Option<String>,
    /// The first offset to read (default 0).
    #[param(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    from_offset: Option<String>,
    /// Events per page (default 100); larger limits are capped at 1000.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 9223372036854775807_u64)]
    limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ReplayPage {
    #[schema(value_type = Topic)]
    topic: &'static str,
    events: Vec<ReplayedEvent>,
    /// Where to continue: one past the last offset read.
    next_offset: u64,
    /// Whether `nextOffset` had reached the log's end when this was read.
    caught_up: bool,
}

#[derive(Serialize, ToSchema)]
struct ReplayedEvent {
    offset: u64,
    /// The event as it is on the log (`EventEnvelope`, also served at
    /// `/schemas/event-envelope.json`).
    #[schema(schema_with = event_envelope_ref)]
    event: Event,
}

/// Reads a topic of the log from an offset: how a client that was away
/// catches up. Served from the log itself, not from a projection.
/// `incident-events` is open to everyone, `presence-events` to PREFECTs
/// and PROFESSORs, `auth-events` to PROFESSORs.
#[utoipa::path(
    get,
    path = "/api/events/replay",
    tag = tags::REPLAY,
    security(("bearer" = [])),
    params(ReplayQuery),
    responses(
        (status = 200, description = "A page of events and where to continue", body = ReplayPage),
        (status = 400, description = "Invalid query values, each named in `fields`", body = ErrorResponse),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 403, description = "The caller's role may not replay this topic: presence-events needs PREFECT or PROFESSOR, auth-events PROFESSOR", body = ErrorResponse),
        (status = 503, description = "The log is unavailable", body = ErrorResponse),
    ),
)]
async fn replay(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ReplayQuery>,
) -> Result<Json<ReplayPage>, ApiError> {
    let mut fields = std::collections::BTreeMap::new();
    let topic = match query
        .topic
        .as_deref()
        .unwrap_or("incident-events")
        .parse::<Topic>()
    {
        Ok(topic) => Some(topic),
        Err(message) => {
            fields.insert("topic".to_owned(), message);
            None
        }
    };
    let from_offset = parse_number(query.from_offset.as_deref(), 0, "fromOffset", &mut fields)
        .filter(|offset| *offset <= i64::MAX as u64);
    if from_offset.is_none() && !fields.contains_key("fromOffset") {
        fields.insert(
            "fromOffset".into(),
            format!("fromOffset must be at most {}", i64::MAX),
        );
    }
    let limit = parse_number(
        query.limit.as_deref(),
        u64::from(DEFAULT_REPLAY_LIMIT),
        "limit",
        &mut fields,
    );
    if limit == Some(0) {
        fields.insert("limit".into(), "limit must be at least 1".into());
    }
    if limit.is_some_and(|limit| limit > i64::MAX as u64) {
        fields.insert(
            "limit".into(),
            format!("limit must be at most {}", i64::MAX),
        );
    }
    let (Some(topic), Some(from_offset), Some(limit)) = (topic, from_offset, limit) else {
        return Err(ApiError::invalid_fields(fields));
    };
    if !fields.is_empty() {
        return Err(ApiError::invalid_fields(fields));
    }
    let needed = role_needed_to_replay(topic);
    if user.role < needed {
        return Err(ApiError::Forbidden(format!(
            "replaying {topic} needs the {needed} role or above"
        )));
    }
    let limit = limit.min(u64::from(MAX_REPLAY_LIMIT)) as u32;
    let page = state.log.read_page(topic, from_offset, limit).await?;
    let next_offset = page.next_offset;
    let events = page
        .records
        .iter()
        .filter_map(|record| match Event::decode(&record.payload) {
            Ok(event) => Some(ReplayedEvent { offset: record.offset, event }),
            Err(error) => {
                tracing::warn!(%topic, offset = record.offset, %error, "replay skips an undecodable message");
                None
            }
        })
        .collect();
    let caught_up = next_offset >= state.log.log_end(topic).await?;
    Ok(Json(ReplayPage {
        topic: topic.name(),
        events,
        next_offset,
        caught_up,
    }))
}

/// A non-negative integer, or `default` when absent; records a field error
/// and returns `None` otherwise.
fn parse_number(
    raw: Option<&str>,
    default: u64,
    field: &str,
    fields: &mut std::collections::BTreeMap<String, String>,
) -> Option<u64> {
    let Some(raw) = raw else { return Some(default) };
    match raw.trim().parse::<u64>() {
        Ok(value) => Some(value),
        Err(_) => {
            fields.insert(
                field.to_owned(),
                format!("{field} must be a non-negative integer, got '{raw}'"),
            );
            None
        }
    }
}
