//! The PostgreSQL pool and the schema in `migrations/`.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

/// Connects with bounded waits, so a database that is down or frozen costs
/// a request its deadline (a 503), never a hang:
///
/// - a connection is waited for at most `timeout`;
/// - a connection handed back while its query was still running (the
///   request ran out of time and was dropped) must answer a ping within
///   `timeout`, or it is closed instead of reused. sqlx pings every returned
///   connection anyway, without a deadline: on a frozen server that ping
///   would hold the connection until the server came back.
///
/// Nothing can bound a query on an open connection from the server's side
/// (`statement_timeout` is enforced by the very server that is frozen), so
/// the deadline of the request itself ends it (`http::deadline`).
pub async fn connect(database_url: &str, timeout: Duration) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(timeout)
        // Every connection was pinged when it came back (below): a second
        // ping on the way out would cost each query a round trip, and would
        // not make a frozen server answer the query that follows it.
        .test_before_acquire(false)
        .after_release(move |connection, _| {
            Box::pin(async move {
                match tokio::time::timeout(timeout, connection.ping()).await {
                    Ok(answered) => answered.map(|()| true),
                    Err(_) => Err(sqlx::Error::PoolTimedOut),
                }
            })
        })
        .connect(database_url)
        .await
        .context("Failed to connect to PostgreSQL (is DATABASE_URL right and the server up?)")
}

/// The migrations, embedded from `migrations/` at compile time.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!()
}

/// How long migrations may take: a long job, with a deadline of its own
/// rather than a request's.
const MIGRATIONS_DEADLINE: Duration = Duration::from_secs(300);

/// Applies the migrations that have not run yet.
pub async fn run_migrations(pool: &PgPool) -> anyhow::Result<()> {
    tokio::time::timeout(MIGRATIONS_DEADLINE, migrator().run(pool))
        .await
        .with_context(|| {
            format!("database migrations did not finish within {MIGRATIONS_DEADLINE:?}")
        })?
        .context("Failed to run database migrations")
}
