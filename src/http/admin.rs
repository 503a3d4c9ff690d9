//! `/api/admin/projections` (PROFESSOR only): each projection's offset, lag,
//! state and dead letters, and rebuilding one from offset 0.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::extract::{ApiPath, AuthUser};
use super::{ApiError, AppState};
use crate::domain::Role;
use crate::projections::{ProjectionStatus, Projections, ProjectionsError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/projections", get(list))
        .route("/api/admin/projections/{name}/rebuild", post(rebuild))
}

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

/// 202: the rebuild runs in the background; poll the list for progress.
async fn rebuild(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.require_role(Role::Professor)?;
    state
        .projections
        .start_rebuild(&name)
        .map_err(projections_error)?;
    let name = Projections::find(&name).map_err(projections_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"name": name, "state": "rebuilding"})),
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
