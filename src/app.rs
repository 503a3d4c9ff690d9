//! Building and running the service: the zero-to-production shape.
//! [`Application::build`] connects, migrates, opens the log and binds the
//! port (port 0 in tests, which read the real one back with
//! [`Application::port`]); [`Application::run_until_stopped`] serves until
//! the shutdown token fires, then drains in order: stop accepting and finish
//! in-flight requests, stop the log's background tasks, close the pool.

use std::net::SocketAddr;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ServeConfig};
use crate::database;
use crate::http::{self, AppState};
use crate::log::EventLog;

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: &Config, serve: &ServeConfig) -> anyhow::Result<Application> {
        let (pool, log) = connect_database_and_log(config).await?;
        if let Err(error) = log.wait_until_ready(serve.iggy_startup_wait()).await {
            // Serving anyway: requests that need the log answer 503 until it
            // is reachable, and the log keeps trying in the background.
            tracing::warn!(%error, "starting without a reachable log");
        }
        let address = SocketAddr::new(serve.host, serve.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("Failed to bind {address}"))?;
        Ok(Application {
            listener,
            state: AppState { log, pool },
        })
    }

    /// The port actually bound (useful when configured as 0).
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or(0)
    }

    pub fn pool(&self) -> &PgPool {
        &self.state.pool
    }

    pub fn log(&self) -> &EventLog {
        &self.state.log
    }

    /// Serves until `shutdown` is cancelled, then drains and closes.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application { listener, state } = self;
        tracing::info!(
            address = %listener.local_addr()?,
            log = state.log.backend_name(),
            "The Marauder's Map is listening"
        );
        let router = http::router(state.clone());
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("HTTP server failed");
        state.log.shutdown().await;
        state.pool.close().await;
        tracing::info!("shut down cleanly");
        served
    }
}

/// Connects to PostgreSQL, applies migrations and opens the configured log
/// (Iggy when `IGGY_URL` is set, the embedded log otherwise).
pub async fn connect_database_and_log(config: &Config) -> anyhow::Result<(PgPool, EventLog)> {
    let pool = database::connect(&config.database_url).await?;
    database::run_migrations(&pool).await?;
    let log = EventLog::open(config.log_config(&pool))
        .await
        .context("Failed to open the event log")?;
    Ok((pool, log))
}
