//! The promise "never hung", at the edge: every request is answered within
//! its deadline, whatever it waits on.
//!
//! Commands bound their own work (`CommandHandler`'s deadline covers the
//! incident lock, the append and its confirmation, and answers "outcome
//! unknown" when it runs out). Everything else — queries, auth, admin — may
//! wait on PostgreSQL, and nothing bounds a query on a connection that is
//! already open: `statement_timeout` is enforced by the server, and a frozen
//! server enforces nothing. So this layer answers 503 with `Retry-After`
//! once the deadline has passed, and drops the handler; the connection it
//! held goes back to the pool, which closes it unless it answers a ping in
//! time (`database::connect`).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// How long requests and their database calls may take.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// The longest any request may take before it is answered 503.
    pub request: Duration,
    /// The longest one database check may take where a handler reports
    /// rather than fails (`/health`).
    pub database: Duration,
}

impl Deadlines {
    /// `serve`'s `REQUEST_DEADLINE_MS`: below 5 s, the promise.
    pub const DEFAULT_REQUEST_MS: u64 = 4_500;
    /// `serve`'s `DATABASE_TIMEOUT_MS`.
    pub const DEFAULT_DATABASE_MS: u64 = 2_000;
}

/// `serve`'s defaults.
impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            request: Duration::from_millis(Self::DEFAULT_REQUEST_MS),
            database: Duration::from_millis(Self::DEFAULT_DATABASE_MS),
        }
    }
}

/// How much later than a command's own deadline this layer gives up, so
/// that the command's more precise answer wins the race.
const GRACE: Duration = Duration::from_millis(250);

/// Answers 503 with `Retry-After` when the handler has not answered within
/// the request deadline.
pub async fn answer_in_time(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = state.deadlines.request + GRACE;
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "no answer within {deadline:?}: the database or the log is slow or down"
        ))
        .into_response(),
    }
}
