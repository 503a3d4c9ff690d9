//! `GET /health`: 200 when the database and the log answer, 503 otherwise,
//! with the log backend and each topic's end either way.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use crate::log::Topic;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database_up = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let mut topics = serde_json::Map::new();
    let mut log_error = None;
    for topic in Topic::ALL {
        match state.log.log_end(topic).await {
            Ok(end) => {
                topics.insert(topic.name().to_owned(), json!({ "logEnd": end }));
            }
            Err(error) => {
                log_error = Some(error.to_string());
                break;
            }
        }
    }
    let healthy = database_up && log_error.is_none();
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "database": if database_up { "up" } else { "down" },
        "log": {
            "backend": state.log.backend_name(),
            "status": if log_error.is_none() { "up" } else { "down" },
            "topics": topics,
        },
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
