//! `GET /health`: 200 when the database and the log answer and every
//! reader of the log can follow it, 503 otherwise — with the log backend,
//! its identity, each topic's end, and what is wrong, either way.

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
use crate::log::breaker::BreakerReport;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct HealthReport {
    /// `ok` when the database and the log both answer and nothing below
    /// names a problem.
    status: Overall,
    database: Availability,
    /// PostgreSQL's circuit breaker: while open, requests that need the
    /// database are refused at once.
    database_breaker: BreakerReport,
    log: LogHealth,
    write_model: WriteModelReport,
    /// Projections that cannot follow this log, by name, with what an
    /// operator must do (empty when all is well, or the database is down).
    projection_problems: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct WriteModelReport {
    /// The next offset of incident-events it will fold.
    next_offset: u64,
    /// Why it cannot follow the log, if it cannot (e.g. an inconsistent log).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    problem: Option<String>,
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
#[serde(rename_all = "camelCase")]
struct LogHealth {
    /// `postgres` (the embedded log) or `iggy`.
    backend: &'static str,
    status: Availability,
    /// The log's identity (absent until Iggy has been reached once).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    log_id: Option<String>,
    /// Each topic's end (its next offset), by topic name; empty while the
    /// log is down.
    topics: BTreeMap<String, TopicHealth>,
    /// The log server's circuit breaker (Iggy only: the embedded log is the
    /// database).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    breaker: Option<BreakerReport>,
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
        (status = 200, description = "The database and the log answer, and every reader can follow the log", body = HealthReport),
        (status = 503, description = "The database or the log does not answer, or a reader cannot follow the log (see `writeModel.problem` and `projectionProblems`)", body = HealthReport),
    ),
)]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    // Everything at once, each check within its own deadline: a frozen
    // database or log costs one deadline, and /health still says which.
    let database_timeout = state.deadlines.database;
    let database_check = tokio::time::timeout(
        database_timeout,
        sqlx::query("SELECT 1").execute(&state.pool),
    );
    let projections_check = tokio::time::timeout(database_timeout, state.projections.status());
    let log_check = futures::future::join_all(Topic::ALL.map(|topic| state.log.log_end(topic)));
    let (database_answer, projections_answer, ends) =
        tokio::join!(database_check, projections_check, log_check);
    let database_up = matches!(database_answer, Ok(Ok(_)));
    if !database_up {
        state.database_breaker.suspect();
    }
    let log_up = ends.iter().all(Result::is_ok);
    let topics: BTreeMap<String, TopicHealth> = if log_up {
        Topic::ALL
            .iter()
            .zip(ends)
            .filter_map(|(topic, end)| {
                Some((topic.name().to_owned(), TopicHealth { log_end: end.ok()? }))
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let availability = |up: bool| {
        if up {
            Availability::Up
        } else {
            Availability::Down
        }
    };
    let write_model = state.write_model.health();
    let projection_problems: BTreeMap<String, String> = match projections_answer {
        Ok(Ok(statuses)) => statuses
            .into_iter()
            .filter_map(|status| Some((status.name.to_owned(), status.problem?)))
            .collect(),
        // The database is down: `database` already says so.
        Ok(Err(_)) | Err(_) => BTreeMap::new(),
    };
    let healthy =
        database_up && log_up && write_model.problem.is_none() && projection_problems.is_empty();
    let report = HealthReport {
        status: if healthy {
            Overall::Ok
        } else {
            Overall::Degraded
        },
        database: availability(database_up),
        database_breaker: state.database_breaker.report(),
        log: LogHealth {
            backend: state.log.backend_name(),
            status: availability(log_up),
            log_id: state.log.known_log_id().map(|id| id.to_string()),
            topics,
            breaker: state.log.breaker(),
        },
        write_model: WriteModelReport {
            next_offset: write_model.next_offset,
            problem: write_model.problem,
        },
        projection_problems,
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}
