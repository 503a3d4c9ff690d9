//! Building and running the service: the zero-to-production shape.
//! [`Application::build`] connects, migrates, opens the log and binds the
//! port and the metrics port (port 0 in tests, which read the real ones
//! back with [`Application::port`] and [`Application::metrics_port`]); [`Application::run_until_stopped`] serves until
//! the shutdown token fires, then drains in order: stop accepting and finish
//! in-flight requests, let the outbox relay finish its batch, stop the
//! log's background tasks, close the pool.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::commands::{CommandHandler, Faults, WriteModel};
use crate::config::{Config, ServeConfig};
use crate::database::{self, DatabaseBreaker};
use crate::http::deadline::Deadlines;
use crate::http::{self, AppState};
use crate::identity::AuthLimits;
use crate::identity::tokens::{JwtKeys, load_or_create_jwt_secret};
use crate::log::EventLog;
use crate::log_migration::LogUserLock;
use crate::outbox::OutboxRelay;
use crate::projections::{Projections, ProjectionsError};
use crate::realtime;
use futures::future::BoxFuture;
use marauders_projections::{
    AppliedWatch, Projection, Projector, ProjectorRunner, ProjectorVisitor, SwitchHold,
};
use socketioxide::layer::SocketIoLayer;

pub struct Application {
    listener: TcpListener,
    /// `GET /metrics` only, apart from the public port.
    metrics_listener: TcpListener,
    state: AppState,
    /// The Socket.IO gateway: its layer joins the router, its workers run
    /// beside the server.
    realtime: (SocketIoLayer, realtime::Workers),
    /// False with `--without-projectors`: they run elsewhere
    /// (`marauders-map project <name>`).
    run_projectors: bool,
    /// Keeps `log migrate` off this database while the service runs.
    log_user_lock: LogUserLock,
}

impl Application {
    pub async fn build(config: &Config, serve: &ServeConfig) -> anyhow::Result<Application> {
        let (pool, log) = connect_database_and_log(config).await?;
        Self::build_on(config, serve, pool, log).await
    }

    /// [`Application::build`] on a migrated pool and a log the caller has
    /// opened (`config.iggy_url` is then not used; `config.database_url`
    /// only for the lock that keeps `log migrate` away). Tests use it to give each service an Iggy stream of its own
    /// on a shared server.
    pub async fn build_on(
        config: &Config,
        serve: &ServeConfig,
        pool: PgPool,
        log: EventLog,
    ) -> anyhow::Result<Application> {
        let secret = load_or_create_jwt_secret(config.jwt_secret.as_deref(), &config.data_dir)?;
        let log_user_lock = LogUserLock::acquire(&config.database_url).await?;
        if let Err(error) = log.wait_until_ready(serve.iggy_startup_wait()).await {
            // Serving anyway: requests that need the log answer 503 until it
            // is reachable, and the log keeps trying in the background.
            tracing::warn!(%error, "starting without a reachable log");
        }
        let write_model = Arc::new(WriteModel::new(log.clone(), pool.clone()));
        match write_model.rebuild(true).await {
            Ok(report) => tracing::info!(
                incidents = report.incidents,
                replayed = report.events_replayed,
                snapshot_offset = ?report.snapshot_offset,
                took = ?report.took,
                "write model rebuilt from the log"
            ),
            // Commands answer 503 until the log is back; the model then
            // catches up from where it is.
            Err(error) => tracing::warn!(%error, "write model not rebuilt yet"),
        }
        let commands = Arc::new(
            CommandHandler::new(log.clone(), write_model.clone())
                .with_deadline(serve.request_deadline()),
        );
        let projections = Arc::new(Projections::new(log.clone(), pool.clone()));
        if !http::web::page_is_built(&serve.web_dir) {
            tracing::warn!(
                web_dir = %serve.web_dir.display(),
                "the web page is not built (run `npm ci && npm run build` in web/); `/` explains this"
            );
        }
        let jwt = Arc::new(
            JwtKeys::from_secret(&secret).with_access_token_lifetime(serve.access_token_lifetime()),
        );
        let applied = AppliedWatch::new(pool.clone());
        let realtime = realtime::gateway(
            log.clone(),
            pool.clone(),
            jwt.clone(),
            write_model.clone(),
            applied.clone(),
            serve.session_check_interval(),
        );
        let address = SocketAddr::new(serve.host, serve.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("Failed to bind {address}"))?;
        let metrics_listener = TcpListener::bind(serve.metrics_address)
            .await
            .with_context(|| {
                format!(
                    "Failed to bind the metrics address {}",
                    serve.metrics_address
                )
            })?;
        let database_breaker =
            DatabaseBreaker::new(&pool, config.database_timeout(), config.breaker());
        let auth_limits =
            AuthLimits::new(serve.auth_limits.throttle(), serve.auth_limits.hashing());
        Ok(Application {
            run_projectors: !serve.without_projectors,
            log_user_lock,
            listener,
            metrics_listener,
            realtime,
            state: AppState {
                log,
                pool,
                jwt,
                commands,
                write_model,
                projections,
                http_metrics: Arc::default(),
                auth_limits: Arc::new(auth_limits),
                web_dir: serve.web_dir.as_path().into(),
                deadlines: Deadlines {
                    request: serve.request_deadline(),
                    database: config.database_timeout(),
                },
                database_breaker,
                applied,
            },
        })
    }

    /// The port actually bound (useful when configured as 0).
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or(0)
    }

    /// The metrics port actually bound.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or(0)
    }

    /// The write side's in-memory fold (tests compare it with other readers).
    pub fn write_model(&self) -> Arc<WriteModel> {
        self.state.write_model.clone()
    }

    /// The write path's fault hooks, for tests that lose an append's answer.
    pub fn faults(&self) -> Arc<Faults> {
        self.state.commands.faults()
    }

    /// Holds this instance's rebuilds just before their switch-over (tests).
    pub fn rebuild_switch_hold(&self) -> Arc<SwitchHold> {
        self.state.projections.switch_hold()
    }

    /// Serves until `shutdown` is cancelled, then drains and closes.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application {
            listener,
            metrics_listener,
            state,
            realtime: (socket_layer, realtime_workers),
            run_projectors: self_runs_projectors,
            log_user_lock,
        } = self;
        tracing::info!(
            address = %listener.local_addr()?,
            metrics = %metrics_listener.local_addr()?,
            log = state.log.backend_name(),
            "The Marauder's Map is listening"
        );
        let metrics_server = tokio::spawn(
            axum::serve(metrics_listener, http::metrics::router(state.clone()))
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
        );
        let relay = tokio::spawn(
            OutboxRelay::new(state.pool.clone(), state.log.clone()).run(shutdown.clone()),
        );
        // Each projector runs on its own, at its own offset.
        let projectors: Vec<_> = if self_runs_projectors {
            Projection::ALL
                .into_iter()
                .map(|projection| {
                    let (log, pool) = (state.log.clone(), state.pool.clone());
                    tokio::spawn(projection.visit(Run {
                        log,
                        pool,
                        shutdown: shutdown.clone(),
                    }))
                })
                .collect()
        } else {
            Vec::new()
        };
        let applied = tokio::spawn(state.applied.clone().run(shutdown.clone()));
        let follower = {
            let (write_model, shutdown) = (state.write_model.clone(), shutdown.clone());
            tokio::spawn(async move { write_model.follow_log(shutdown).await })
        };
        let realtime_tasks = realtime_workers.spawn(shutdown.clone());
        let router = http::router(state.clone()).layer(socket_layer);
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("HTTP server failed");
        // If serving failed on its own, the other tasks still need the signal.
        shutdown.cancel();
        match metrics_server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the metrics listener failed"),
            Err(error) => tracing::error!(%error, "the metrics listener panicked"),
        }
        for (task, name) in [
            (relay, "outbox relay"),
            (follower, "write model follower"),
            (applied, "projector notifications"),
        ]
        .into_iter()
        .chain(projectors.into_iter().map(|task| (task, "projector")))
        .chain(
            realtime_tasks
                .into_iter()
                .map(|task| (task, "real-time gateway")),
        ) {
            if let Err(error) = task.await {
                tracing::error!(%error, task = name, "a background task panicked");
            }
        }
        state.log.shutdown().await;
        state.pool.close().await;
        drop(log_user_lock);
        tracing::info!("shut down cleanly");
        served
    }
}

/// Connects to PostgreSQL, applies migrations and opens the configured log
/// (Iggy when `IGGY_URL` is set, the embedded log otherwise).
pub async fn connect_database_and_log(config: &Config) -> anyhow::Result<(PgPool, EventLog)> {
    let pool = database::connect(&config.database_url, config.database_timeout()).await?;
    database::run_migrations(&pool).await?;
    let log = EventLog::open(config.log_config(&pool))
        .await
        .context("Failed to open the event log")?;
    Ok((pool, log))
}

/// Runs the projector called `name` until `shutdown`.
pub async fn run_projector(
    name: &str,
    log: EventLog,
    pool: PgPool,
    shutdown: CancellationToken,
) -> Result<(), ProjectionsError> {
    Projections::find(name)?
        .visit(Run {
            log,
            pool,
            shutdown,
        })
        .await;
    Ok(())
}

/// Running whichever projector, until `shutdown`.
struct Run {
    log: EventLog,
    pool: PgPool,
    shutdown: CancellationToken,
}

impl ProjectorVisitor for Run {
    type Output = BoxFuture<'static, ()>;

    fn visit<P: Projector + 'static>(self, projector: P) -> Self::Output {
        Box::pin(ProjectorRunner::new(projector, self.log, self.pool).run(self.shutdown))
    }
}
