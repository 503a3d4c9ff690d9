//! The PostgreSQL pool and the schema in `migrations/`.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Connects with bounded waits: a request never waits more than a few
/// seconds for a connection, so a database outage becomes a 503, not a hang.
pub async fn connect(database_url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(3))
        .connect(database_url)
        .await
        .context("Failed to connect to PostgreSQL (is DATABASE_URL right and the server up?)")
}

/// The migrations, embedded from `migrations/` at compile time.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!()
}

/// Applies the migrations that have not run yet.
pub async fn run_migrations(pool: &PgPool) -> anyhow::Result<()> {
    migrator()
        .run(pool)
        .await
        .context("Failed to run database migrations")
}
