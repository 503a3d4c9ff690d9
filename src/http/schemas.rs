//! Machine-readable descriptions clients can fetch. Public: the handler
//! takes no access token.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::openapi::tags;
use crate::events::ENVELOPE_JSON_SCHEMA;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(event_envelope_schema))
}

/// The JSON Schema (draft 2020-12) of the envelope every event on the log
/// follows; the OpenAPI document embeds the same schema as `EventEnvelope`.
#[utoipa::path(
    get,
    path = "/schemas/event-envelope.json",
    tag = tags::SERVICE,
    responses(
        (status = 200, description = "The event envelope's JSON Schema", body = Object, content_type = "application/schema+json"),
    ),
)]
async fn event_envelope_schema() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/schema+json")],
        ENVELOPE_JSON_SCHEMA,
    )
}
