//! The OpenAPI 3.1 document of the REST API, generated from the code.
//!
//! Each handler carries its own description (`#[utoipa::path]`: method, path,
//! parameters, body, every status it can answer), and each feature's
//! `router()` registers it with `routes!`, which adds the route to axum *and*
//! its description to the document in one call — so the two cannot drift.
//! `tests/api/openapi.rs` fails if a route is served some other way.
//!
//! Served at `GET /api/openapi.json`, and browsable at `GET /api/docs`
//! (Swagger UI, whose files are compiled into the binary: no CDN). Both are
//! public: like every route, they need a token only if their handler
//! extracts [`AuthUser`](super::extract::AuthUser).

use std::sync::OnceLock;

use axum::{Json, Router};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Object, ObjectBuilder, Ref, RefOr, Type, schema::Schema};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::AppState;
use crate::events::ENVELOPE_JSON_SCHEMA;

/// Where the document is served.
pub const OPENAPI_JSON_PATH: &str = "/api/openapi.json";
/// Where Swagger UI is served (it redirects to `/api/docs/`, whose relative
/// links then find its files).
pub const DOCS_PATH: &str = "/api/docs";
/// The name of the security scheme for `Authorization: Bearer <access
/// token>`; handlers name it as `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";
/// The component the event envelope's JSON Schema is embedded as.
pub const EVENT_ENVELOPE_SCHEMA_NAME: &str = "EventEnvelope";

/// The operation tags, one per part of the API.
pub mod tags {
    pub const SERVICE: &str = "service";
    pub const AUTH: &str = "auth";
    pub const COMMANDS: &str = "incident commands";
    pub const QUERIES: &str = "incident queries";
    pub const NOTIFICATIONS: &str = "notifications and audit";
    pub const REPLAY: &str = "replay";
    pub const ADMIN: &str = "admin";
}

/// What the document says besides its paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "The Marauder's Map",
        description = "A real-time incident service for Hogwarts, event-sourced. Commands answer once \
the log has their event, with its offset in the `Event-Offset` header; queries read projections and \
take that offset as `minOffset` to read their own writes. Every error is \
`{\"error\": {\"code\", \"message\", \"fields\"?, \"rule\"?}}`: `rule` names the domain rule that \
refused a command (several rules share a `code`); an internal error is an opaque 500 that no \
input should produce."
    ),
    modifiers(&BearerSecurity),
    tags(
        (name = tags::SERVICE, description = "Health and the machine-readable descriptions"),
        (name = tags::AUTH, description = "Accounts, sessions and tokens"),
        (name = tags::COMMANDS, description = "The write side: each command appends one event to the log"),
        (name = tags::QUERIES, description = "Incidents as the read model has them"),
        (name = tags::NOTIFICATIONS, description = "The caller's notifications, and the audit log"),
        (name = tags::REPLAY, description = "Reading the log itself from an offset"),
        (name = tags::ADMIN, description = "Projections: status and rebuilds (PROFESSOR)"),
    )
)]
struct ApiDoc;

/// Adds the bearer (JWT) scheme that protected operations refer to.
struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from register, login or refresh (valid 15 minutes unless ACCESS_TOKEN_LIFETIME_SECS says otherwise).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document's starting point, before any route adds itself to it.
pub fn base_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/openapi.json` itself.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// Swagger UI at `/api/docs`, reading the document from
/// [`OPENAPI_JSON_PATH`]. Its files come from the `utoipa-swagger-ui`
/// crate's `vendored` feature, so neither the build nor a browser fetches
/// anything from elsewhere. These are pages for people, not API operations,
/// so they are not in the document.
pub fn swagger_ui() -> Router<AppState> {
    SwaggerUi::new(DOCS_PATH)
        .config(
            Config::new([OPENAPI_JSON_PATH])
                // The default validator is a badge loaded from swagger.io.
                .validator_url("none"),
        )
        .into()
}

/// This document: every REST operation, its parameters, bodies, statuses
/// and headers.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = tags::SERVICE,
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)),
)]
async fn openapi_json() -> Json<&'static Value> {
    Json(document())
}

/// The finished document as JSON, built once from [`super::api_routes`].
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let openapi = super::api_routes().into_openapi();
        let mut document =
            serde_json::to_value(&openapi).expect("the OpenAPI document serializes to JSON");
        embed_event_envelope_schema(&mut document);
        require_at_least_one_property(&mut document, UPDATE_REQUEST_SCHEMA_NAME);
        document
    })
}

/// The body of `PUT /api/incidents/{id}`: every field optional, but at
/// least one of them must be there (else 400, "nothing to update").
pub const UPDATE_REQUEST_SCHEMA_NAME: &str = "UpdateRequest";

/// Says in the schema `name` that at least one of its own properties must
/// be present — `anyOf` one `required` per property, so an object holding
/// only properties it does not know fails too, as it does on the server.
/// (utoipa has no attribute for it.)
fn require_at_least_one_property(document: &mut Value, name: &str) {
    let schema = &mut document["components"]["schemas"][name];
    let properties: Vec<Value> = schema["properties"]
        .as_object()
        .map(|properties| {
            properties
                .keys()
                .map(|property| serde_json::json!({ "required": [property] }))
                .collect()
        })
        .unwrap_or_default();
    assert!(!properties.is_empty(), "{name} has properties");
    schema["anyOf"] = Value::Array(properties);
}

/// A string schema with exactly `values`: for a closed set the handler
/// takes as raw text but derives from the domain (`schema_with = …`).
pub fn string_enum_schema(values: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

/// A reference to the embedded envelope schema, for fields that hold an
/// event (`#[schema(schema_with = event_envelope_ref)]`).
pub fn event_envelope_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(EVENT_ENVELOPE_SCHEMA_NAME))
}

/// Puts the envelope's JSON Schema — the very file served at
/// `/schemas/event-envelope.json` — into the document's components. OpenAPI
/// 3.1 schemas are JSON Schema 2020-12, so it goes in as it is, less the
/// keywords that only make sense at the root of its own file.
fn embed_event_envelope_schema(document: &mut Value) {
    let mut schema: Value =
        serde_json::from_str(ENVELOPE_JSON_SCHEMA).expect("the envelope schema is valid JSON");
    let keywords = schema
        .as_object_mut()
        .expect("the envelope schema is a JSON object");
    // `$id` would make the embedded copy claim to be the served file and
    // change how references inside the document resolve.
    keywords.remove("$id");
    keywords.remove("$schema");
    keywords.insert(
        "externalDocs".into(),
        serde_json::json!({
            "description": "The same schema as a standalone JSON Schema document",
            "url": "/schemas/event-envelope.json",
        }),
    );
    document["components"]["schemas"][EVENT_ENVELOPE_SCHEMA_NAME] = schema;
}
