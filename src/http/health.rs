//! `GET /health`: 200 when the database and the log answer, 503 otherwise,
//! with the log backend and each topic's end either way.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::openapi::tags;
use crate::log::Topic;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
struct HealthReport {
    /// `ok` when the database and the log both answer.
    status: Overall,
    database: Availability,
    log: LogHealth,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Overall {
    Ok,
    Degraded,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Availability {
    Up,
    Down,
}

#[derive(Serialize, ToSchema)]
struct LogHealth {
    /// `postgres` (the embedded log) or `iggy`.
    backend: &'static str,
    status: Availability,
    /// Each topic's end (its next offset), by topic name; empty while the
    /// log is down.
    topics: BTreeMap<String, TopicHealth>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TopicHealth {
    log_end: u64,
}

/// Whether the service, its database and its log are up.
#[utoipa::path(
    get,
    path = "/health",
    tag = tags::SERVICE,
    responses(
        (status = 200, description = "The database and the log answer", body = HealthReport),
        (status = 503, description = "The database or the log does not answer", body = HealthReport),
    ),
)]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let database_up = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let mut topics = BTreeMap::new();
    let mut log_up = true;
    for topic in Topic::ALL {
        match state.log.log_end(topic).await {
            Ok(log_end) => {
                topics.insert(topic.name().to_owned(), TopicHealth { log_end });
            }
            Err(_) => {
                log_up = false;
                topics.clear();
                break;
            }
        }
    }
    let availability = |up: bool| {
        if up {
            Availability::Up
        } else {
            Availability::Down
        }
    };
    let healthy = database_up && log_up;
    let report = HealthReport {
        status: if healthy {
            Overall::Ok
        } else {
            Overall::Degraded
        },
        database: availability(database_up),
        log: LogHealth {
            backend: state.log.backend_name(),
            status: availability(log_up),
            topics,
        },
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}
