//! `/api/admin/projections` (PROFESSOR only): each projection's offset, lag,
//! state and dead letters, and rebuilding one from offset 0; and
//! `/api/admin/outbox`: the relay's backlog and the rows it set aside.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorResponse;
use super::extract::{ApiPath, AuthUser};
use super::openapi::tags;
use super::{ApiError, AppState};
use crate::domain::Role;
use crate::outbox::{self, SetAsideRow};
use crate::projections::{ProjectionStatus, Projections, ProjectionsError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(rebuild))
        .routes(routes!(outbox))
}

/// The most set-aside rows `GET /api/admin/outbox` lists.
const SET_ASIDE_LISTED: i64 = 100;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct OutboxReport {
    /// Account events committed and waiting to be relayed to the log.
    backlog: i64,
    /// Rows the relay could not publish and set aside (the oldest 100),
    /// with why.
    set_aside: Vec<SetAsideRow>,
}

/// The outbox relay's backlog and the rows it set aside (PROFESSOR).
#[utoipa::path(
    get,
    path = "/api/admin/outbox",
    tag = tags::ADMIN,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The backlog and the set-aside rows", body = OutboxReport),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 403, description = "The caller is not a PROFESSOR", body = ErrorResponse),
        (status = 503, description = "The database is unavailable", body = ErrorResponse),
    ),
)]
async fn outbox(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<OutboxReport>, ApiError> {
    user.require_role(Role::Professor)?;
    Ok(Json(OutboxReport {
        backlog: outbox::backlog(&state.pool).await?,
        set_aside: outbox::set_aside_rows(&state.pool, SET_ASIDE_LISTED).await?,
    }))
}

#[derive(Serialize, ToSchema)]
struct RebuildStarted {
    name: &'static str,
    /// Always `rebuilding`.
    state: &'static str,
}

/// Each projection's stored offset, log end, lag, state, dead letters and
/// rebuild progress (PROFESSOR).
#[utoipa::path(
    get,
    path = "/api/admin/projections",
    tag = tags::ADMIN,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every projection", body = Vec<ProjectionStatus>),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 403, description = "The caller is not a PROFESSOR", body = ErrorResponse),
        (status = 503, description = "The database or the log is unavailable", body = ErrorResponse),
    ),
)]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<ProjectionStatus>>, ApiError> {
    user.require_role(Role::Professor)?;
    Ok(Json(
        state
            .projections
            .status()
            .await
            .map_err(projections_error)?,
    ))
}

/// Starts replaying a projection from offset 0 into fresh tables, switched
/// over atomically when it catches up (PROFESSOR). 202: the rebuild runs in
/// the background; poll the list for progress.
#[utoipa::path(
    post,
    path = "/api/admin/projections/{name}/rebuild",
    tag = tags::ADMIN,
    security(("bearer" = [])),
    params(("name" = String, Path, description = "`read-model`, `notifications` or `audit`", example = "read-model")),
    responses(
        (status = 202, description = "The rebuild has started", body = RebuildStarted),
        (status = 401, description = "No valid access token", body = ErrorResponse),
        (status = 403, description = "The caller is not a PROFESSOR", body = ErrorResponse),
        (status = 404, description = "No projection has this name", body = ErrorResponse),
        (status = 409, description = "It is already being rebuilt, by this instance or another on the same database", body = ErrorResponse),
        (status = 503, description = "The database or the log is unavailable", body = ErrorResponse),
    ),
)]
async fn rebuild(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<RebuildStarted>), ApiError> {
    user.require_role(Role::Professor)?;
    let projection = Projections::find(&name).map_err(projections_error)?;
    state
        .projections
        .start_rebuild(projection)
        .await
        .map_err(projections_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RebuildStarted {
            name: projection.name(),
            state: "rebuilding",
        }),
    ))
}

fn projections_error(error: ProjectionsError) -> ApiError {
    match error {
        ProjectionsError::Unknown(_) => ApiError::NotFound(error.to_string()),
        ProjectionsError::AlreadyRebuilding(_) => ApiError::Conflict(error.to_string()),
        ProjectionsError::Log(error) => ApiError::from(error),
        ProjectionsError::Database(error) => ApiError::from(error),
        ProjectionsError::Projection(error) => ApiError::Internal(anyhow::Error::new(error)),
    }
}
