//! The projector runtime: a projector is a name, a topic and a handler that
//! changes PostgreSQL tables. [`ProjectorRunner::poll_once`] applies one
//! batch in one transaction *together with the new offset*, so after a crash
//! at any moment the projector resumes exactly where its last commit left
//! it: nothing lost, nothing applied twice.

use std::time::Duration;

use marauders_core::events::Event;
use marauders_core::log::{EventLog, LogError, LogId, Topic};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::applied::ADVANCED_CHANNEL;

/// How often an idle runner proves it is alive; a projector whose offset row
/// has not moved for three of these is reported as stopped.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// A reader of the log that keeps tables in PostgreSQL.
pub trait Projector: Send + Sync {
    /// Unique, stable: its offset and bookkeeping are stored under it.
    fn name(&self) -> &'static str;

    fn topic(&self) -> Topic;

    /// The tables this projector owns (and a rebuild replaces).
    fn tables(&self) -> &'static [&'static str];

    /// SQL run during a rebuild's switch-over to carry state that is not
    /// derived from the log from the old tables (`old.<table>`) into the new
    /// (`new.<table>`) — e.g. which notifications were read.
    fn carry_over_sql(&self) -> Option<&'static str> {
        None
    }

    /// Applies one event inside the runner's transaction. An error aborts
    /// the whole batch (it is retried); events the projector does not care
    /// about are simply ignored.
    ///
    /// The log may hold copies of an event (an outbox re-send, a command's
    /// re-sent append): applying a copy must change nothing. Incident
    /// projectors get that from the version rule (a copy claims a version
    /// already taken), others from rows keyed by the event id. There is no
    /// shared "seen event ids" table: a voided copy must not hide a later
    /// copy that the version rule accepts.
    fn apply(
        &self,
        tx: &mut PgConnection,
        offset: u64,
        event: &Event,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Applied a batch: `applied` events handed to the projector (copies and
    /// lost races among them change nothing), `dead_lettered` that could not
    /// be decoded.
    Advanced {
        applied: usize,
        dead_lettered: usize,
        next_offset: u64,
    },
    CaughtUp {
        next_offset: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Log(#[from] LogError),
    /// The projector's offset was stored while reading another log: it
    /// means nothing here, and applying from it would serve state of that
    /// other log as if it were this one's.
    #[error(
        "projection {projector} was built from log {stored}, but the log is {log}: rebuild it (POST /api/admin/projections/{projector}/rebuild or `marauders-map projection rebuild {projector}`) or migrate the log"
    )]
    WrongLog {
        projector: &'static str,
        stored: LogId,
        log: LogId,
    },
    #[error("projection database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A step waited longer than [`STEP_DEADLINE`]: the database or the log
    /// stopped answering. The step's transaction is rolled back.
    #[error(
        "a projector step did not finish within {0:?}: the database or the log is not answering"
    )]
    TimedOut(Duration),
    /// The log and a projector's offset disagree in a way that needs an
    /// operator (say, a log end below an offset already applied).
    #[error("{0}")]
    Inconsistent(String),
}

/// The longest one step of [`ProjectorRunner::run`] may take. A batch takes
/// milliseconds; a step that takes this long is waiting on a dependency that
/// stopped answering, and ending it releases its connection and row lock.
pub const STEP_DEADLINE: Duration = Duration::from_secs(10);

pub struct ProjectorRunner<P> {
    projector: P,
    log: EventLog,
    pool: PgPool,
    batch_size: u32,
    /// During a rebuild: the schema holding the fresh tables, searched
    /// before `public`.
    schema: Option<String>,
}

impl<P: Projector> ProjectorRunner<P> {
    pub fn new(projector: P, log: EventLog, pool: PgPool) -> Self {
        ProjectorRunner {
            projector,
            log,
            pool,
            batch_size: 500,
            schema: None,
        }
    }

    /// Applies into the tables of `schema` (a rebuild in progress).
    pub fn in_schema(mut self, schema: &str) -> Self {
        self.schema = Some(schema.to_owned());
        self
    }

    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = batch_size;
        self
    }

    pub fn projector(&self) -> &P {
        &self.projector
    }

    /// One step: lock this projector's offset row, check it belongs to this
    /// log, read a batch from it, apply each event (dead-lettering what
    /// cannot be decoded), store the new offset, commit.
    pub async fn poll_once(&self) -> Result<StepOutcome, ProjectionError> {
        let (name, topic) = (self.projector.name(), self.projector.topic());
        let log_id = self.log.log_id().await?;
        let mut tx = self.pool.begin().await?;
        if let Some(schema) = &self.schema {
            sqlx::query("SELECT set_config('search_path', $1, true)")
                .bind(format!("{schema}, public"))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO projector_offsets (projector, topic, log_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(topic.name())
            .bind(log_id.0)
            .execute(&mut *tx)
            .await?;
        // The row lock also keeps two runners of one projector (two
        // instances) from applying the same batch at once.
        let (next, stored_log): (i64, Option<uuid::Uuid>) =
            sqlx::query_as("SELECT next_offset, log_id FROM projector_offsets WHERE projector = $1 AND topic = $2 FOR UPDATE")
                .bind(name)
                .bind(topic.name())
                .fetch_one(&mut *tx)
                .await?;
        // A row from before log ids existed adopts the log it runs on.
        if let Some(stored) = stored_log.map(LogId)
            && stored != log_id
        {
            return Err(ProjectionError::WrongLog {
                projector: name,
                stored,
                log: log_id,
            });
        }
        let from = next as u64;
        let page = self.log.read_page(topic, from, self.batch_size).await?;
        if page.next_offset == from {
            return Ok(StepOutcome::CaughtUp { next_offset: from });
        }
        // Usually past the last record; past a hole with no records at all.
        let next_offset = page.next_offset;
        let (mut applied, mut dead_lettered) = (0, 0);
        for record in &page.records {
            let event = match Event::decode(&record.payload) {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(projector = name, %topic, offset = record.offset, %error, "dead-lettering a message");
                    sqlx::query(
                        "INSERT INTO dead_letters (projector, topic, log_offset, error, payload) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(name)
                    .bind(topic.name())
                    .bind(record.offset as i64)
                    .bind(error.to_string())
                    .bind(record.payload.as_ref())
                    .execute(&mut *tx)
                    .await?;
                    dead_lettered += 1;
                    continue;
                }
            };
            self.projector.apply(&mut tx, record.offset, &event).await?;
            applied += 1;
        }
        sqlx::query("UPDATE projector_offsets SET next_offset = $3, log_id = $4, updated_at = now() WHERE projector = $1 AND topic = $2")
            .bind(name)
            .bind(topic.name())
            .bind(next_offset as i64)
            .bind(log_id.0)
            .execute(&mut *tx)
            .await?;
        if self.schema.is_none() {
            // Delivered at commit: wakes read-your-writes waiters in every
            // process (`applied.rs`). A rebuild's steps wake nobody.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(ADVANCED_CHANNEL)
                .bind(format!("{name} {next_offset}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(StepOutcome::Advanced {
            applied,
            dead_lettered,
            next_offset,
        })
    }

    /// Tells `projections` that this projector is alive while idle (its
    /// offset row's `updated_at` also moves with every batch).
    async fn heartbeat(&self) {
        let touched = sqlx::query(
            "UPDATE projector_offsets SET updated_at = now() WHERE projector = $1 AND topic = $2",
        )
        .bind(self.projector.name())
        .bind(self.projector.topic().name())
        .execute(&self.pool)
        .await;
        if let Err(error) = touched {
            tracing::debug!(%error, "projector heartbeat failed");
        }
    }

    /// Steps until `shutdown`: at once while behind, asleep until the log
    /// grows when caught up, a second's pause after a failure. A batch in
    /// progress commits before it returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let (name, topic) = (self.projector.name(), self.projector.topic());
        while !shutdown.is_cancelled() {
            let step = tokio::time::timeout(STEP_DEADLINE, self.poll_once())
                .await
                .unwrap_or(Err(ProjectionError::TimedOut(STEP_DEADLINE)));
            match step {
                Ok(StepOutcome::Advanced { .. }) => {}
                Ok(StepOutcome::CaughtUp { next_offset }) => {
                    // Bounded like a step: a heartbeat that cannot reach the
                    // database is skipped, not waited for.
                    let _ = tokio::time::timeout(STEP_DEADLINE, self.heartbeat()).await;
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = self.log.wait_for_new_events(topic, next_offset, HEARTBEAT_INTERVAL) => {}
                    }
                }
                Err(error @ ProjectionError::WrongLog { .. }) => {
                    // Not transient: an operator must rebuild. Say so now and
                    // then, and notice when the rebuild has fixed it.
                    tracing::error!(projector = name, %error, "projector refuses to run on this log");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(projector = name, %error, "projector step failed; retrying in 1s");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        tracing::info!(projector = name, "projector stopped");
    }
}

/// Where a projector stands: the next offset it will read, and the log
/// that offset belongs to (`None` before it first ran, or for a row from
/// before log ids existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionPosition {
    pub next_offset: u64,
    pub log_id: Option<LogId>,
}

impl ProjectionPosition {
    /// Whether this position may be used on the log `log`.
    pub fn belongs_to(&self, log: LogId) -> bool {
        self.log_id.is_none_or(|stored| stored == log)
    }
}

pub async fn projection_position(
    pool: &PgPool,
    projector: &str,
    topic: Topic,
) -> Result<ProjectionPosition, sqlx::Error> {
    let row: Option<(i64, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT next_offset, log_id FROM projector_offsets WHERE projector = $1 AND topic = $2",
    )
    .bind(projector)
    .bind(topic.name())
    .fetch_optional(pool)
    .await?;
    Ok(row.map_or(
        ProjectionPosition {
            next_offset: 0,
            log_id: None,
        },
        |(next, log_id)| ProjectionPosition {
            next_offset: next as u64,
            log_id: log_id.map(LogId),
        },
    ))
}

/// Where `projector` will read `topic` next (0 if it never ran).
pub async fn stored_offset(
    pool: &PgPool,
    projector: &str,
    topic: Topic,
) -> Result<u64, sqlx::Error> {
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT next_offset FROM projector_offsets WHERE projector = $1 AND topic = $2",
    )
    .bind(projector)
    .bind(topic.name())
    .fetch_optional(pool)
    .await?;
    Ok(next.map_or(0, |next| next as u64))
}
