//! The HTTP surface: one router, built from each feature's own routes.
//!
//! - [`error`]: [`ApiError`], the one place errors become responses.
//! - [`deadline`]: every request answered within its deadline.
//! - [`dependencies`]: requests that need the database refused at once
//!   while it is down.
//! - [`health`]: `GET /health` — is the service, its database and its log up?
//! - [`schemas`]: `GET /schemas/event-envelope.json`.
//! - [`admin`]: projection status and rebuilds (PROFESSOR).
//! - [`auth`]: `/api/auth/*` (identity).
//! - [`incidents`]: the incident commands (the write side).
//! - [`queries`]: incident queries from the read model, with `minOffset`.
//! - [`metrics`]: `GET /metrics` (Prometheus) on a listener of its own, and
//!   the request timer.
//! - [`notifications`]: the caller's notifications, and the audit log.
//! - [`replay`]: `GET /api/events/replay`, reading the log from an offset.
//! - [`extract`]: JSON bodies, the authenticated user, the client address.
//! - [`web`]: the built web page at `/` (the fallback for every other path).
//! - [`body_limit`]: oversized bodies get a 413 the client can read.
//! - [`security_headers`]: CSP, `nosniff` and `Referrer-Policy` on every
//!   response.
//! - [`openapi`]: the OpenAPI document (`GET /api/openapi.json`), generated
//!   from the handlers, and Swagger UI (`GET /api/docs`).

pub mod admin;
pub mod auth;
pub mod body_limit;
pub mod deadline;
pub mod dependencies;
pub mod error;
pub mod extract;
pub mod health;
pub mod incidents;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod queries;
pub mod replay;
pub mod schemas;
pub mod security_headers;
pub mod web;

use std::path::Path;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

pub use body_limit::MAX_BODY_BYTES;
pub use error::ApiError;

use crate::commands::{CommandHandler, WriteModel};
use crate::database::DatabaseBreaker;
use crate::identity::AuthLimits;
use crate::identity::tokens::JwtKeys;
use crate::log::EventLog;
use crate::projections::Projections;
use dependencies::{Dependencies, needs_the_database, needs_the_log};
use marauders_projections::AppliedWatch;

/// What every handler can reach. Cheap to clone (everything inside is a
/// handle).
#[derive(Clone)]
pub struct AppState {
    pub log: EventLog,
    pub pool: PgPool,
    pub jwt: Arc<JwtKeys>,
    pub commands: Arc<CommandHandler>,
    pub write_model: Arc<WriteModel>,
    pub projections: Arc<Projections>,
    pub http_metrics: Arc<metrics::HttpMetrics>,
    /// Throttling and bounded password hashing for the credential
    /// endpoints.
    pub auth_limits: Arc<AuthLimits>,
    /// The built web page served at `/` (`--web-dir`).
    pub web_dir: Arc<Path>,
    pub deadlines: deadline::Deadlines,
    /// PostgreSQL's circuit breaker (see [`dependencies`]).
    pub database_breaker: DatabaseBreaker,
    /// Wakes read-your-writes waiters when a projector advances.
    pub applied: AppliedWatch,
}

/// Every REST route, each registered together with its description in the
/// OpenAPI document (see [`openapi`]).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base_document())
        .merge(health::router())
        .merge(schemas::router())
        .merge(openapi::router())
        .merge(auth::router().route_layer(from_fn(needs_the_database)))
        .merge(incidents::router().route_layer(from_fn(needs_the_log)))
        .merge(queries::router().route_layer(from_fn(needs_the_database)))
        .merge(notifications::router().route_layer(from_fn(needs_the_database)))
        .merge(admin::router().route_layer(from_fn(needs_the_database)))
        .merge(replay::router().route_layer(from_fn(needs_the_log)))
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, _document) = api_routes().split_for_parts();
    api.merge(openapi::swagger_ui())
        .fallback(web::page_or_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline::answer_in_time,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::record_request,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(body_limit::limit_request_body))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(
            security_headers::add_security_headers,
        ))
        .layer(TraceLayer::new_for_http())
        .layer(Extension(Dependencies {
            database: state.database_breaker.clone(),
            log_is_the_database: matches!(state.log, EventLog::Postgres(_)),
        }))
        .with_state(state)
}

/// A panic in a handler is a bug; the client still gets the JSON 500.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
}
