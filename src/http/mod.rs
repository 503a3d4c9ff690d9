//! The HTTP surface: one router, built from each feature's own routes.
//!
//! - [`error`]: [`ApiError`], the one place errors become responses.
//! - [`health`]: `GET /health` — is the service, its database and its log up?
//! - [`schemas`]: `GET /api/schemas/event-envelope.json`.

pub mod error;
pub mod health;
pub mod schemas;

use axum::Router;
use sqlx::PgPool;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::log::EventLog;

/// What every handler can reach. Cheap to clone (everything inside is a
/// handle).
#[derive(Clone)]
pub struct AppState {
    pub log: EventLog,
    pub pool: PgPool,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(schemas::router())
        .fallback(error::route_not_found)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
