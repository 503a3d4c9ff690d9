//! Requests that need PostgreSQL fail at once while it is known to be down
//! (see [`DatabaseBreaker`]), instead of each waiting out its deadline.
//!
//! Which requests need it is said where their routes are merged
//! ([`super::api_routes`]): queries, auth, notifications and admin always;
//! commands and replay only when the log is the embedded one, which lives
//! in the database. On Iggy, commands and replay go on while PostgreSQL is
//! down.
//!
//! A request that needed the database and failed as if it were down (a
//! 503) or was dropped unanswered (the request deadline, a client that
//! went away) makes the breaker check the database; only that check can
//! open it.

use axum::Extension;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::database::DatabaseBreaker;

/// What the routes' middleware needs to know, put on every request by
/// [`super::router`].
#[derive(Clone)]
pub struct Dependencies {
    pub database: DatabaseBreaker,
    /// The embedded log: the log is the database.
    pub log_is_the_database: bool,
}

/// For routes that always need the database.
pub async fn needs_the_database(
    Extension(dependencies): Extension<Dependencies>,
    request: Request,
    next: Next,
) -> Response {
    guarded(&dependencies.database, request, next).await
}

/// For routes that need the log: the database's breaker guards them only
/// when the log lives in the database (Iggy's calls have their own).
pub async fn needs_the_log(
    Extension(dependencies): Extension<Dependencies>,
    request: Request,
    next: Next,
) -> Response {
    if dependencies.log_is_the_database {
        guarded(&dependencies.database, request, next).await
    } else {
        next.run(request).await
    }
}

async fn guarded(database: &DatabaseBreaker, request: Request, next: Next) -> Response {
    if let Err(refused) = database.admit().await {
        return ApiError::DatabaseDown {
            retry_after: refused.retry_in,
        }
        .into_response();
    }
    let mut unanswered = SuspectUnlessAnswered {
        database,
        answered: false,
    };
    let response = next.run(request).await;
    unanswered.answered = response.status() != StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// Makes the breaker check the database when the request ends without an
/// answer other than 503 — including when it is dropped mid-way.
struct SuspectUnlessAnswered<'a> {
    database: &'a DatabaseBreaker,
    answered: bool,
}

impl Drop for SuspectUnlessAnswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.database.suspect();
        }
    }
}
