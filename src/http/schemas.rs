//! Machine-readable descriptions clients can fetch. Public: they live
//! outside `/api`, where every route requires an access token.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use crate::events::ENVELOPE_JSON_SCHEMA;

pub fn router() -> Router<AppState> {
    Router::new().route("/schemas/event-envelope.json", get(event_envelope_schema))
}

/// The JSON Schema of the event envelope every event on the log follows.
async fn event_envelope_schema() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/schema+json")],
        ENVELOPE_JSON_SCHEMA,
    )
}
