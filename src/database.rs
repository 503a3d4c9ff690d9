//! The PostgreSQL pool and the schema in `migrations/`.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

/// Connects with bounded waits, so a database that is down or frozen costs
/// a request its deadline (a 503), never a hang:
///
/// - a connection is waited for at most `timeout`, sqlx's ping of an idle
///   one before it is handed out included (so a connection the server
///   dropped while idle, say at a restart, is replaced, not handed out to
///   fail its first query);
/// - a connection handed back, such as one whose query was still running
///   when its request ran out of time and was dropped, must answer a ping
///   within `timeout`, or it is closed hard instead of reused. (sqlx then
///   pings it once more, without a deadline; the first ping has just
///   shown the server answers.)
///
/// Nothing can bound a query on an open connection from the server's side
/// (`statement_timeout` is enforced by the very server that is frozen), so
/// the deadline of the request itself ends it (`http::deadline`).
pub async fn connect(database_url: &str, timeout: Duration) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(timeout)
        .after_release(move |connection, _| {
            Box::pin(async move {
                match tokio::time::timeout(timeout, connection.ping()).await {
                    Ok(answered) => answered.map(|()| true),
                    // An error closes the connection hard: it cannot be
                    // trusted to finish anything gracefully.
                    Err(elapsed) => Err(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("a returned connection did not answer a ping: {elapsed}"),
                    ))),
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
