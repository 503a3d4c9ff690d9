//! The PostgreSQL pool, its circuit breaker, and the schema in `migrations/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::log::breaker::{Breaker, BreakerReport, BreakerSettings, ProbeInFlight, Refused};

/// How long a connection must have been idle before it is pinged on its
/// way out of the pool. A connection dropped by a server restart was idle
/// at least as long as the restart took, and no restart of PostgreSQL
/// (stop, start, recovery) is that quick; a connection handed back within
/// this long answered the release pings just now.
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_millis(100);

/// Connects with bounded waits, so a database that is down or frozen costs
/// a request its deadline (a 503), never a hang:
///
/// - a connection is waited for at most `timeout`, the ping of an idle
///   one before it is handed out included (so a connection the server
///   dropped while idle, say at a restart, is replaced, not handed out to
///   fail its first query). Only a connection idle for at least
///   [`PING_WHEN_IDLE_FOR`] is pinged: sqlx's own test pings every one, a
///   round trip before every query (in the service and in PostgreSQL) to
///   check a connection that, under load, answered the release pings
///   below a moment ago;
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
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
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

/// The database's circuit breaker: once PostgreSQL is found down, requests
/// that need it are refused at once (503 with `Retry-After`) instead of
/// each waiting out its deadline on a pool that cannot hand out a working
/// connection.
///
/// A request's failure is only a suspicion — a busy database is not a dead
/// one — so a failed or timed-out request that needed the database starts
/// a check (one at a time, in the background): a fresh connection, not one
/// from the pool, and a ping, within the database timeout. Only a check
/// that fails opens the breaker. Once its backoff has passed, the next
/// request is held for one more check (the half-open probe), whose outcome
/// closes or reopens the breaker for everyone.
#[derive(Clone)]
pub struct DatabaseBreaker {
    inner: Arc<BreakerInner>,
}

struct BreakerInner {
    breaker: Breaker,
    connect_options: PgConnectOptions,
    timeout: Duration,
    /// A background check is out: suspicions meanwhile add nothing.
    checking: AtomicBool,
}

impl DatabaseBreaker {
    pub fn new(pool: &PgPool, timeout: Duration, settings: BreakerSettings) -> DatabaseBreaker {
        DatabaseBreaker {
            inner: Arc::new(BreakerInner {
                breaker: Breaker::new(settings),
                connect_options: (*pool.connect_options()).clone(),
                timeout,
                checking: AtomicBool::new(false),
            }),
        }
    }

    /// May a request that needs the database go ahead? Refused while the
    /// breaker is open; the half-open probe is checked here, first.
    pub async fn admit(&self) -> Result<(), Refused> {
        let breaker = &self.inner.breaker;
        if !breaker.admit()?.probe {
            return Ok(());
        }
        // Dropped mid-check (the client went away), the probe has no
        // verdict: let the next request probe.
        let mut probe = ProbeInFlight {
            breaker,
            armed: true,
        };
        let epoch = breaker.epoch();
        let outcome = self.check().await;
        probe.armed = false;
        match outcome {
            Ok(()) => {
                breaker.succeeded();
                Ok(())
            }
            Err(reason) => {
                breaker.failed(epoch, reason.clone());
                Err(Refused {
                    reason,
                    retry_in: breaker
                        .report()
                        .retry_in_ms
                        .map_or(Duration::from_secs(1), Duration::from_millis),
                })
            }
        }
    }

    /// A request that needed the database failed as if it were down, or
    /// ran out of time: check, in the background, unless a check is out.
    pub fn suspect(&self) {
        if self.inner.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let epoch = this.inner.breaker.epoch();
            if let Err(reason) = this.check().await {
                tracing::warn!(%reason, "the database is down: requests that need it are refused until it answers");
                this.inner.breaker.failed(epoch, reason);
            }
            this.inner.checking.store(false, Ordering::Release);
        });
    }

    /// Connects afresh and pings, within the database timeout. An error
    /// *from* the server (say, too many connections) proves it answers.
    async fn check(&self) -> Result<(), String> {
        let attempt = async {
            let mut connection = PgConnection::connect_with(&self.inner.connect_options).await?;
            connection.ping().await?;
            connection.close().await
        };
        match tokio::time::timeout(self.inner.timeout, attempt).await {
            Ok(Ok(())) | Ok(Err(sqlx::Error::Database(_))) => Ok(()),
            Ok(Err(error)) => Err(format!("the database failed a check: {error}")),
            Err(_) => Err(format!(
                "the database did not answer a check within {:?}",
                self.inner.timeout
            )),
        }
    }

    /// For `/health` and `/metrics`.
    pub fn report(&self) -> BreakerReport {
        self.inner.breaker.report()
    }
}
